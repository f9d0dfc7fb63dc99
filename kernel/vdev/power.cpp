#include "kernel/vdev/power.hpp"

bool PowerModel::io(u16 port, u8 size, bool in, u32 &value)
{
    if (port != SLEEP_CTL && port != SLEEP_STS && port != RESET) return false;
    if (in) {
        value = port == SLEEP_STS ? 0x80 : 0;   // WAK_STS: a sleep that returns would be done at once
        return true;
    }
    const u8 v = u8(value);
    if (port == SLEEP_CTL && (v & 0x20) && ((v >> 2) & 7) == S5_TYP) {   // SLP_EN with SLP_TYP = S5
        p_.exit_requested = true;
        p_.exit_code = 0;
    } else if (port == RESET && v == RESET_VALUE) {
        p_.reset_requested = true;
    }
    (void)size;
    return true;
}
