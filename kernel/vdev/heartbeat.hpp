// Keel's watchdog heartbeat: an I/O port a guest writes (any value, any width)
// to say it is alive. Present only for a guest with `watchdog = "..."`; the
// hypervisor core compares the beat count at its tick (kernel/hv/manage.cpp).
// A read returns the signature "KEEL" (as much of it as the width holds), so a
// guest can probe for it: from Linux, `dd if=/dev/port bs=1 skip=$((0x6f0)) count=1`
// reads 'K', and writing any byte there is a heartbeat.
#pragma once

#include "kernel/vdev/guest_platform.hpp"

class HeartbeatModel final : public IoDevice {
public:
    static constexpr u16 PORT = 0x6f0;      // 4 ports: PORT .. PORT + 3
    static constexpr u32 SIGNATURE = 0x4c45454b;   // "KEEL", little-endian

    bool io(u16 port, u8 size, bool in, u32 &value) override
    {
        if (in) {
            const u32 sig = SIGNATURE >> 8 * (port - PORT);
            value = size == 4 ? sig : sig & ((1u << 8 * size) - 1);
        } else {
            __atomic_fetch_add(&beats_, 1, __ATOMIC_RELAXED);
        }
        return true;
    }
    u64 beats() const { return __atomic_load_n(&beats_, __ATOMIC_RELAXED); }

private:
    u64 beats_ = 0;
};
