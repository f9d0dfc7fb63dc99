#include "kernel/vdev/pit.hpp"

u64 PitModel::ticks(const Channel &c, u64 t) const
{
    if (!c.loaded || t <= c.start) return 0;
    const u64 d = t - c.start;
    // d * PIT_HZ / tsc_hz without overflow: whole seconds, then the remainder (< tsc_hz < 2^42).
    return d / tsc_hz_ * PIT_HZ + (d % tsc_hz_) * PIT_HZ / tsc_hz_;
}

u16 PitModel::count_at(unsigned ch, u64 t) const
{
    const Channel &c = ch_[ch % 3];
    const u64 period = c.reload ? c.reload : 0x10000;
    const u64 n = ticks(c, t);
    if (c.mode == 2 || c.mode == 3) return u16(period - n % period);   // periodic: reloads
    return u16((period - n % 0x10000) & 0xffff);                        // mode 0 and others: wraps
}

bool PitModel::out_at(unsigned ch, u64 t) const
{
    const Channel &c = ch_[ch % 3];
    if (!c.loaded) return false;
    const u64 period = c.reload ? c.reload : 0x10000;
    if (c.mode == 0) return ticks(c, t) >= period;                      // terminal count reached
    return true;
}

u8 PitModel::read(Channel &c, u64 t)
{
    const u16 v = c.latched ? c.latch : count_at(unsigned(&c - ch_), t);
    u8 byte;
    if (c.access == 1) byte = u8(v);
    else if (c.access == 2) byte = u8(v >> 8);
    else {
        byte = c.read_hi ? u8(v >> 8) : u8(v);
        c.read_hi = !c.read_hi;
        if (c.read_hi) return byte;   // the high byte of a latched value is still to come
    }
    c.latched = false;
    return byte;
}

void PitModel::write(Channel &c, u8 v, u64 t)
{
    if (c.access == 3 && !c.write_hi) {
        c.low = v;
        c.write_hi = true;
        c.loaded = false;             // mode 0: counting stops until the count is complete
        return;
    }
    if (c.access == 1) c.reload = v;
    else if (c.access == 2) c.reload = u16(v << 8);
    else c.reload = u16(c.low | v << 8);
    c.write_hi = false;
    c.loaded = true;
    c.start = t;
}

bool PitModel::io(u16 port, u8 size, bool in, u32 &value)
{
    if (port != 0x61 && (port < 0x40 || port > 0x43)) return false;
    const u64 t = now_(ctx_);
    if (port == 0x61) {
        if (in) {
            // OUT2, and the refresh bit toggling every 15 us as on a PC.
            const u64 refresh = (t / max<u64>(tsc_hz_ / 66666, 1)) & 1;
            value = port61_ | (out_at(2, t) ? 0x20 : 0) | u8(refresh << 4);
        } else {
            const bool gate_rises = !(port61_ & 1) && (value & 1);
            port61_ = u8(value & 3);
            if (gate_rises && ch_[2].loaded) ch_[2].start = t;   // a rising gate restarts channel 2
        }
        return true;
    }
    if (port == 0x43) {
        if (in) {
            value = 0xff;
            return true;
        }
        const u8 cw = u8(value);
        const unsigned sel = cw >> 6;
        if (sel == 3) {               // read-back: latch the counts of the selected channels
            for (unsigned i = 0; i < 3; i++)
                if (!(cw & 0x20) && (cw & (2u << i))) ch_[i].latched = true, ch_[i].latch = count_at(i, t);
            return true;
        }
        Channel &c = ch_[sel];
        if (((cw >> 4) & 3) == 0) {   // counter latch command
            if (!c.latched) c.latched = true, c.latch = count_at(sel, t);
            return true;
        }
        c.access = (cw >> 4) & 3;
        c.mode = (cw >> 1) & 7;
        if (c.mode > 5) c.mode -= 4;  // 6 and 7 alias 2 and 3
        c.loaded = c.latched = c.read_hi = c.write_hi = false;
        return true;
    }
    Channel &c = ch_[port - 0x40];
    if (in) value = read(c, t);
    else write(c, u8(value), t);
    (void)size;
    return true;
}
