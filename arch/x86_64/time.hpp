// The TSC as Keel's clock: calibrated once on the boot CPU.
#pragma once

#include "kernel/types.hpp"

namespace time {

// Calibrate from CPUID 0x15/0x16, cross-checked against the PIT; returns the source used.
const char *calibrate_tsc();
u64 tsc_hz();
void delay_us(u64 us);

} // namespace time
