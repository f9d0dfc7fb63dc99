// A fake guest for the virtio tests: 1 MiB of guest RAM (a GuestMemory over a
// host vector with guard bytes on both sides) and a driver-side split ring
// built in it, byte by byte, little-endian.
#pragma once

#include <cstring>
#include <vector>

#include "kernel/guest/guest_memory.hpp"
#include "kernel/virtio/virtqueue.hpp"

namespace fake {

constexpr u64 BASE = 0x100000;        // guest RAM [1 MiB, 2 MiB)
constexpr u64 SIZE = 0x100000;
constexpr u64 DESC = BASE;            // default ring placement
constexpr u64 AVAIL = BASE + 0x1000;
constexpr u64 USED = BASE + 0x2000;
constexpr u64 BUF = BASE + 0x10000;   // buffers from here

constexpr u16 NEXT = 1, WRITE = 2, INDIRECT = 4;

struct Guest {
    static constexpr size_t GUARD = 256;
    std::vector<u8> buf = std::vector<u8>(SIZE + 2 * GUARD, 0xcc);
    GuestMemory mem;

    Guest()
    {
        std::memset(ram(), 0, SIZE);
        (void)mem.add(GuestPhys(BASE), SIZE, ram());
    }
    u8 *ram() { return buf.data() + GUARD; }
    u8 *at(u64 gpa) { return ram() + (gpa - BASE); }
    bool guards_ok() const
    {
        for (size_t i = 0; i < GUARD; i++)
            if (buf[i] != 0xcc || buf[buf.size() - 1 - i] != 0xcc) return false;
        return true;
    }
    void put(u64 gpa, u64 v, unsigned n)
    {
        for (unsigned i = 0; i < n; i++) at(gpa)[i] = u8(v >> 8 * i);
    }
    u64 get(u64 gpa, unsigned n)
    {
        u64 v = 0;
        for (unsigned i = 0; i < n; i++) v |= u64(at(gpa)[i]) << 8 * i;
        return v;
    }
};

// The driver's side of one queue.
struct Ring {
    Guest &g;
    u32 size;
    u64 desc, avail, used;
    u16 idx = 0;   // the driver's avail idx

    Ring(Guest &guest, u32 n, u64 d = DESC, u64 a = AVAIL, u64 u = USED) : g(guest), size(n), desc(d), avail(a), used(u) {}

    static void put_desc(Guest &g, u64 table, u32 i, u64 addr, u32 len, u16 flags, u16 next)
    {
        const u64 e = table + 16ull * i;
        g.put(e, addr, 8);
        g.put(e + 8, len, 4);
        g.put(e + 12, flags, 2);
        g.put(e + 14, next, 2);
    }
    void set(u32 i, u64 addr, u32 len, u16 flags = 0, u16 next = 0) { put_desc(g, desc, i, addr, len, flags, next); }
    void offer(u16 head)
    {
        g.put(avail + 4 + 2ull * (idx % size), head, 2);
        idx++;
        g.put(avail + 2, idx, 2);
    }
    void set_used_event(u16 v) { g.put(avail + 4 + 2ull * size, v, 2); }
    void set_avail_flags(u16 v) { g.put(avail, v, 2); }
    u16 used_idx() { return u16(g.get(used + 2, 2)); }
    u32 used_id(u16 i) { return u32(g.get(used + 4 + 8ull * (i % size), 4)); }
    u32 used_len(u16 i) { return u32(g.get(used + 8 + 8ull * (i % size), 4)); }
    u16 avail_event() { return u16(g.get(used + 4 + 8ull * size, 2)); }
    u16 used_flags() { return u16(g.get(used, 2)); }

    // The transport's part: program and enable vq with this ring.
    bool setup(virtio::Virtqueue &vq, u64 features)
    {
        vq.attach(g.mem);
        vq.reset();
        vq.set_size(size);
        vq.set_rings(desc, avail, used);
        vq.set_features(features);
        return vq.enable();
    }
};

} // namespace fake
