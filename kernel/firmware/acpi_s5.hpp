// The one piece of AML Keel reads: the \_S5 package (SLP_TYPa/SLP_TYPb for
// soft-off), found by pattern in the DSDT/SSDT bytes, without an interpreter.
#pragma once

#include "kernel/lib/types.hpp"

// Search `aml` (a DSDT or SSDT, header included or not) for Name(_S5_, Package(){a, b, ...}).
bool acpi_find_s5(const u8 *aml, usize len, u8 &slp_typa, u8 &slp_typb);
