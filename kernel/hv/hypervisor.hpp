// Keel's hypervisor core (kernel-only): guests from the configuration, their
// vCPUs, per-CPU run queues, the run loop, guest lifecycle and accounting.
#pragma once

#include "kernel/firmware/cmdline.hpp"
#include "kernel/firmware/multiboot2.hpp"

namespace hv {

// On the boot CPU once every CPU is up: enable virtualization, read the
// configuration module, create the guests and run them. Never returns.
[[noreturn]] void start(const BootInfo &bi, const Cmdline &cmdline);

// The scheduler loop of an application processor (entered when start() asks).
[[noreturn]] void cpu_loop();

} // namespace hv
