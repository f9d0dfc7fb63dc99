#include "kernel/vdev/power.hpp"

u32 PowerModel::pm_timer_at(u64 t) const
{
    // t * PM_TMR_HZ / tsc_hz without overflow: whole seconds, then the remainder (< tsc_hz < 2^42).
    const u64 ticks = t / tsc_hz_ * PM_TMR_HZ + (t % tsc_hz_) * PM_TMR_HZ / tsc_hz_;
    return u32(ticks) & PM_TMR_MASK;
}

bool PowerModel::io(u16 port, u8 size, bool in, u32 &value)
{
    if (port >= PM_TMR && port < PM_TMR + 4) {
        // Read-only; a narrower or unaligned read gets the bytes at its offset.
        if (in) value = pm_timer_at(now_(ctx_)) >> 8 * (port - PM_TMR);
        return true;
    }
    if (port != SLEEP_CTL && port != SLEEP_STS && port != RESET) return false;
    if (in) {
        value = port == SLEEP_STS ? 0x80 : 0;   // WAK_STS: a sleep that returns would be done at once
        return true;
    }
    const u8 v = u8(value);
    if (port == SLEEP_CTL && (v & 0x20) && ((v >> 2) & 7) == S5_TYP) {   // SLP_EN with SLP_TYP = S5
        p_.request_exit(0);
    } else if (port == RESET && v == RESET_VALUE) {
        p_.request_reset();
    }
    (void)size;
    return true;
}
