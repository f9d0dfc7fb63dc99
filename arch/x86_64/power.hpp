// Machine power control through ACPI.
#pragma once

#include "kernel/firmware/acpi.hpp"

namespace power {

// Enter ACPI S5 (soft-off): SLP_TYP from the DSDT's \_S5, written with SLP_EN
// to PM1a/PM1b control. Returns (with a reason logged) only if that did not work.
void off(const Acpi &acpi);

} // namespace power
