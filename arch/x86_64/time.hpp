// The TSC as Keel's clock: calibrated once on the boot CPU.
#pragma once

#include "kernel/lib/types.hpp"

namespace time {

// Calibrate from CPUID 0x15/0x16, cross-checked against the PIT (or, without a
// PIT, the ACPI PM timer at that I/O port, 0 if none); returns the source used.
const char *calibrate_tsc(u16 pm_timer_port, bool pm_timer_32bit, bool use_pit = true);
u64 tsc_hz();
void delay_us(u64 us);

} // namespace time
