// Machine power control through ACPI.
#pragma once

#include "kernel/firmware/acpi.hpp"

namespace power {

// Enter ACPI S5 (soft-off): SLP_TYP from the DSDT's \_S5, written with SLP_EN
// to PM1a/PM1b control. Returns (with a reason logged) only if that did not work.
void off(const Acpi &acpi);

// Power off after a failure, with a failure code for whoever watches: written
// first (one byte) to the debug-exit port if Keel's command line names one
// (debug_exit=0xPORT; QEMU's isa-debug-exit then leaves with status code*2+1),
// then ACPI S5 as off() does. Returns (with a reason logged) only if neither worked.
void off_failed(const Acpi &acpi, u16 debug_exit_port, u8 code);

} // namespace power
