// vblk: a virtio-blk driver in a Multiboot guest, polling (IF=0, no paging), to
// drive Keel's virtio-pci disks through real VM exits.
//
//   mode=io      (default) the good neighbour: writes a position-dependent pattern
//                over the first `mib=N` MiB (default 4) of disk 0 in 4 KiB requests,
//                flushes, reads it all back and compares, `rounds=R` times (default 2).
//   mode=hostile each malformed-ring case from a fresh device: the device must go to
//                DEVICE_NEEDS_RESET (status 0x40), come back from a reset, and serve a
//                good read again. With a second, read-only disk (device 2): a write to
//                it answers VIRTIO_BLK_S_IOERR and does not change it.
//   mode=range   requests at and past the end of disk 0 (sector = capacity, capacity-1 with
//                2 sectors, huge sectors, sector * 512 wrapping to the disk's start or just
//                before it): each write and read answers VIRTIO_BLK_S_IOERR, a refused write
//                changes nothing, a refused read leaves its buffer alone; writes that end at
//                the last sector are OK. Then `floods=N` (default 50) rounds that fill the
//                queue (128 entries, 42 requests of 3 descriptors, one notify): out-of-range
//                writes (IOERR), in-range writes and reads of the last 8 sectors (OK). What
//                it leaves on the disk: its last 4 KiB all 0xa5, nothing else changed
//                (tests/vm/nvme_vblk.toml checks that host-side); refused writes carry 0x5a.
//   mode=bench   `count=N` 4 KiB reads of disk 0 at queue depth `qd=Q` (1..32), as
//                a driver would: Q requests offered, one notify, refilled as they
//                complete (one notify per refill batch); sequential, or at random
//                4 KiB-aligned offsets with `rand=1`; writes with `write=1`. Prints
//                `vblk: bench qd=Q requests=N tsc=T` (bench/vblk_cost.py).
// Checked lines as every checked guest (tests/guests/README.md); exit 0 or the first
// failed check.
//
// Memory: rings at 2 MiB, buffers from 2 MiB + 64 KiB; the guest needs >= 8 MiB RAM.
// Disk d's BAR 0 is put at 0xC0000000 + d * 64 KiB (the bus's 32-bit window).
#include "lib/guest.hpp"

extern "C" const char guest_name[] = "vblk";

namespace {

constexpr u32 ECAM = 0xE0000000;
constexpr u32 BAR_WINDOW = 0xC0000000;
constexpr u16 QSIZE = 16;
constexpr u32 RINGS = 0x200000;        // per disk: + d * 16 KiB: desc, avail (+4K), used (+8K)
constexpr u32 BUFS = 0x210000;         // header, status, then data
constexpr u32 HDR = BUFS, STATUS = BUFS + 0x100, DATA = BUFS + 0x1000;

constexpr u8 S_ACK = 1, S_DRIVER = 2, S_DRIVER_OK = 4, S_FEATURES_OK = 8, S_NEEDS_RESET = 0x40;
constexpr u16 F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4;
constexpr u32 T_IN = 0, T_OUT = 1, T_FLUSH = 4;

template <typename T> T rd(u32 a) { return mmio_rd<T>(a); }
template <typename T> void wr(u32 a, T v) { mmio_wr<T>(a, v); }

struct Desc { u64 addr; u32 len; u16 flags, next; };

struct Disk {
    u32 dev = 0;                 // PCI device number
    u32 common = 0, notify = 0, isr = 0, devcfg = 0;   // guest-physical addresses in BAR 0
    u32 mult = 0;
    u32 notify_at = 0;           // queue 0's notify address (read once, as drivers do)
    u32 rings = 0;
    u16 avail = 0, used = 0;     // our copies of the indices
    u64 capacity = 0;

    Desc* desc() const { return reinterpret_cast<Desc*>(rings); }
    u32 avail_ring() const { return rings + 0x1000; }
    u32 used_ring() const { return rings + 0x2000; }
    u8 status() const { return rd<u8>(common + 0x14); }
    void set_status(u8 s) const { wr<u8>(common + 0x14, s); }

    // Finds the function, places BAR 0, walks the vendor capabilities.
    bool probe(u32 d)
    {
        dev = d;
        const u32 cfg = ECAM + (d << 15);
        if (rd<u32>(cfg) != 0x10421af4) return false;
        const u32 bar = BAR_WINDOW + d * 0x10000;
        wr<u32>(cfg + 0x10, bar);
        wr<u32>(cfg + 0x14, 0);
        wr<u16>(cfg + 0x04, u16(rd<u16>(cfg + 0x04) | 0x6));   // memory space, bus master
        for (u32 p = rd<u8>(cfg + 0x34); p; p = rd<u8>(cfg + p + 1)) {
            if (rd<u8>(cfg + p) != 0x09) continue;
            const u32 at = bar + rd<u32>(cfg + p + 8);
            switch (rd<u8>(cfg + p + 3)) {
            case 1: common = at; break;
            case 2: notify = at; mult = rd<u32>(cfg + p + 16); break;
            case 3: isr = at; break;
            case 4: devcfg = at; break;
            }
        }
        rings = RINGS + (d - 1) * 0x4000;
        return common && notify && isr && devcfg;
    }

    bool reset() const
    {
        set_status(0);
        return status() == 0;
    }

    // Reset .. FEATURES_OK; queue 0 of `size` entries unless size is 0; DRIVER_OK if `ok`.
    bool start(u16 size = QSIZE, bool ok = true)
    {
        qsize = size ? size : QSIZE;
        if (!reset()) return false;
        set_status(S_ACK);
        set_status(S_ACK | S_DRIVER);
        wr<u32>(common + 0x00, 1);
        if (!(rd<u32>(common + 0x04) & 1)) return false;   // VIRTIO_F_VERSION_1
        wr<u32>(common + 0x08, 0);
        wr<u32>(common + 0x0c, 0);
        wr<u32>(common + 0x08, 1);
        wr<u32>(common + 0x0c, 1);
        set_status(S_ACK | S_DRIVER | S_FEATURES_OK);
        if (!(status() & S_FEATURES_OK)) return false;
        capacity = rd<u32>(devcfg) | u64(rd<u32>(devcfg + 4)) << 32;
        avail = used = 0;
        for (u32 i = 0; i < 0x3000; i += 4) wr<u32>(rings + i, 0);
        wr<u16>(avail_ring(), 1);                                  // VIRTQ_AVAIL_F_NO_INTERRUPT
        if (size) {
            wr<u16>(common + 0x16, 0);
            wr<u16>(common + 0x18, size);
            wr<u32>(common + 0x20, rings);
            wr<u32>(common + 0x24, 0);
            wr<u32>(common + 0x28, avail_ring());
            wr<u32>(common + 0x2c, 0);
            wr<u32>(common + 0x30, used_ring());
            wr<u32>(common + 0x34, 0);
            wr<u16>(common + 0x1c, 1);
        }
        notify_at = notify + rd<u16>(common + 0x1e) * mult;
        if (ok) set_status(S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
        return !(status() & S_NEEDS_RESET);
    }

    u16 qsize = QSIZE;

    void kick() const { wr<u16>(notify_at, 0); }

    // Offers head `h`, kicks; true if the device used it (polls the used ring).
    bool offer(u16 h)
    {
        wr<u16>(avail_ring() + 4 + (avail % qsize) * 2, h);
        avail++;
        asm volatile("" ::: "memory");
        wr<u16>(avail_ring() + 2, avail);
        kick();
        for (u32 spin = 0; spin < 1000000; spin++) {
            if (rd<u16>(used_ring() + 2) != used) {
                used++;
                return true;
            }
            if (status() & S_NEEDS_RESET) return false;
        }
        return false;
    }

    // header, data (len bytes at `data`, device-writable for IN), status: the status byte (0xff: none).
    u8 request(u32 type, u64 sector, u32 data, u32 len)
    {
        wr<u32>(HDR, type);
        wr<u32>(HDR + 4, 0);
        wr<u32>(HDR + 8, u32(sector));
        wr<u32>(HDR + 12, u32(sector >> 32));
        wr<u8>(STATUS, 0xff);
        Desc* t = desc();
        t[0] = {HDR, 16, F_NEXT, 1};
        t[1] = {data, len, u16(F_NEXT | (type == T_IN ? F_WRITE : 0)), 2};
        t[2] = {STATUS, 1, F_WRITE, 0};
        if (!len) t[0].next = 2;
        if (!offer(0)) return 0xfe;
        return rd<u8>(STATUS);
    }
};

u32 pattern(u64 sector, u32 word, u32 round) { return u32(sector * 0x9e3779b1u) ^ (word << 16) ^ word ^ round * 0x5bd1e995u; }

Checks checks;

u32 run_io(Disk& d)
{
    const u64 mib = cmdline_u64("mib", 4), rounds = cmdline_u64("rounds", 2);
    const u64 sectors = mib * 2048;
    checks.check(d.start(), "device starts", "status %x", d.status());
    checks.check(d.capacity >= sectors, "capacity", "%llu sectors, want >= %llu", d.capacity, sectors);
    for (u32 r = 0; r < rounds; r++) {
        u32 bad = 0, ioerr = 0;
        for (u64 s = 0; s < sectors; s += 8) {
            for (u32 w = 0; w < 1024; w++) wr<u32>(DATA + w * 4, pattern(s + w / 128, w % 128, r));
            if (d.request(T_OUT, s, DATA, 4096) != 0) ioerr++;
        }
        if (d.request(T_FLUSH, 0, 0, 0) != 0) ioerr++;
        for (u64 s = 0; s < sectors; s += 8) {
            for (u32 w = 0; w < 1024; w++) wr<u32>(DATA + w * 4, 0);
            if (d.request(T_IN, s, DATA, 4096) != 0) ioerr++;
            for (u32 w = 0; w < 1024; w++)
                if (rd<u32>(DATA + w * 4) != pattern(s + w / 128, w % 128, r)) bad++;
        }
        checks.check(!ioerr && !bad, "round written, flushed, read back", "round %u: %llu MiB, %u failed requests, %u "
                     "bad words", r, mib, ioerr, bad);
    }
    return 0;
}

// A good read of sector 0 after a reset: the device is usable again.
bool recovers(Disk& d) { return d.start() && d.request(T_IN, 0, DATA, 512) == 0; }

// Sets up a malformed chain at head 0 with `build`, offers it; the device must need a reset.
template <typename F> void malformed(Disk& d, const char* what, F build)
{
    bool started = d.start();
    build(d.desc());
    d.offer(0);
    const u8 s = d.status();
    checks.check(started && (s & S_NEEDS_RESET) && recovers(d), what, "started %d status %x", started, s);
}

u32 run_hostile(Disk& d)
{
    checks.check(recovers(d), "a good read first", "status %x", d.status());
    malformed(d, "descriptor loop: DEVICE_NEEDS_RESET, then usable", [](Desc* t) {
        wr<u32>(HDR, T_IN);
        t[0] = {HDR, 16, F_NEXT, 1};
        t[1] = {DATA, 512, F_NEXT, 0};   // readable, back to 0: only the loop is wrong
    });
    malformed(d, "buffer outside RAM", [](Desc* t) {
        wr<u32>(HDR, T_IN);
        t[0] = {HDR, 16, F_NEXT, 1};
        t[1] = {0x7ff00000, 512, F_NEXT | F_WRITE, 2};
        t[2] = {STATUS, 1, F_WRITE, 0};
    });
    malformed(d, "length wraps the address space", [](Desc* t) {
        wr<u32>(HDR, T_IN);
        t[0] = {HDR, 16, F_NEXT, 1};
        t[1] = {0xfffffffffffff000ull, 0x2000, F_NEXT | F_WRITE, 2};
        t[2] = {STATUS, 1, F_WRITE, 0};
    });
    malformed(d, "device-readable after device-writable", [](Desc* t) {
        wr<u32>(HDR, T_IN);
        t[0] = {HDR, 16, F_NEXT, 1};
        t[1] = {STATUS, 1, F_NEXT | F_WRITE, 2};
        t[2] = {DATA, 512, 0, 0};
    });
    malformed(d, "next index beyond the queue", [](Desc* t) { t[0] = {HDR, 16, F_NEXT, 999}; });
    malformed(d, "nested indirect table", [](Desc* t) {
        Desc* ind = reinterpret_cast<Desc*>(DATA);
        ind[0] = {DATA, 16, F_INDIRECT, 0};
        t[0] = {DATA, 16, F_INDIRECT, 0};
    });
    {
        // avail idx jumps more than the queue size ahead.
        const bool started = d.start();
        wr<u16>(d.avail_ring() + 2, u16(QSIZE * 3));
        d.kick();
        const u8 s = d.status();
        checks.check(started && (s & S_NEEDS_RESET) && recovers(d), "avail idx jumps past the queue",
                     "started %d status %x", started, s);
    }
    {
        // Queue size 3: not a power of two.
        const bool started = d.start(3, false);
        const u8 s = d.status();
        checks.check(!started && (s & S_NEEDS_RESET) && recovers(d), "queue size 3", "status %x", s);
    }
    {
        // A kick before DRIVER_OK.
        const bool started = d.start(QSIZE, false);
        d.kick();
        const u8 s = d.status();
        checks.check(started && (s & S_NEEDS_RESET) && recovers(d), "notify before DRIVER_OK", "status %x", s);
    }
    Disk ro;
    if (ro.probe(2)) {
        checks.check(ro.start(), "read-only disk starts", "status %x", ro.status());
        u8 before = 0;
        if (ro.request(T_IN, 0, DATA, 512) == 0) before = rd<u8>(DATA);
        for (u32 i = 0; i < 512; i++) wr<u8>(DATA + 0x800 + i, u8(before + 1));
        const u8 w = ro.request(T_OUT, 0, DATA + 0x800, 512);
        const u8 r = ro.request(T_IN, 0, DATA, 512);
        checks.check(w == 1 && r == 0 && rd<u8>(DATA) == before, "write to the read-only disk: IOERR, unchanged",
                     "write status %u, read status %u, byte %x was %x", w, r, rd<u8>(DATA), before);
    }
    return 0;
}

// ---- mode=range
constexpr u8 EDGE = 0xa5, HOSTILE = 0x5a, UNTOUCHED = 0xee;
constexpr u32 WBUF = 0x220000;   // 64 KiB of HOSTILE: what refused writes carry
constexpr u32 EBUF = 0x230000;   // 4 KiB of EDGE: what in-range writes carry
constexpr u32 RBUF = 0x240000;   // reads (64 KiB; per flood slot 512 bytes)

void fill(u32 at, u8 v, u32 len) { for (u32 i = 0; i < len; i += 4) wr<u32>(at + i, u32(v) * 0x01010101u); }
bool all(u32 at, u8 v, u32 len)
{
    for (u32 i = 0; i < len; i += 4)
        if (rd<u32>(at + i) != u32(v) * 0x01010101u) return false;
    return true;
}

u32 run_range(Disk& d)
{
    constexpr u16 RANGE_QSIZE = 128;
    if (!d.start(RANGE_QSIZE)) {
        printf("vblk: FAIL range: device does not start (status %x)\n", d.status());
        return 1;
    }
    const u64 c = d.capacity;
    printf("vblk: range: capacity %llu sectors\n", c);
    fill(WBUF, HOSTILE, 0x10000);
    fill(EBUF, EDGE, 0x1000);
    // Sector 0 as it was (its signature): a wrapped write must not reach it.
    fill(RBUF, 0, 512);
    const u8 r0 = d.request(T_IN, 0, RBUF, 512);
    u32 first[128];
    for (u32 i = 0; i < 128; i++) first[i] = rd<u32>(RBUF + i * 4);
    const u8 w8 = d.request(T_OUT, c - 8, EBUF, 4096), w1 = d.request(T_OUT, c - 1, EBUF, 512);
    checks.check(r0 == 0 && w8 == 0 && w1 == 0, "in range up to the last sector: OK",
                 "read of sector 0 %u, write of the last 8 sectors %u, of the last one %u", r0, w8, w1);

    struct Bad { u64 sector; u32 len; };
    const Bad bad[] = {
        {c, 512}, {c, 4096}, {c - 1, 1024}, {c - 7, 8192}, {c - 1, 0x10000}, {c + 1, 512},
        {c + 0x100000000ull, 512}, {0x100000000ull, 512}, {1ull << 63, 512},
        {1ull << 55, 512},                 // * 512 = 2^64: wraps to byte 0
        {(1ull << 55) - 1, 1024},          // bytes 2^64 - 512 .. 2^64 + 512: wraps across 0
        {~0ull, 512},                      // * 512 = -512: the sector before the disk
        {~0ull - 7, 4096},                 // * 512 = -4096
        {~0ull / 512 - 1, 0x10000},        // the byte offset fits, offset + length does not
    };
    u32 n = 0;
    for (const Bad& b : bad) {
        n++;
        const u8 w = d.request(T_OUT, b.sector, WBUF, b.len);
        fill(RBUF, UNTOUCHED, b.len);
        const u8 r = d.request(T_IN, b.sector, RBUF, b.len);
        const bool kept = all(RBUF, UNTOUCHED, b.len);
        checks.check(w == 1 && r == 1 && kept, "out of range: IOERR, read buffer untouched",
                     "case %u: sector %llx, %u bytes: write status %u, read status %u, buffer %s", n, b.sector,
                     b.len, w, r, kept ? "untouched" : "written");
    }
    fill(RBUF, 0, 4096);
    const u8 re = d.request(T_IN, c - 8, RBUF, 4096);
    checks.check(re == 0 && all(RBUF, EDGE, 4096), "the last 8 sectors kept what was written in range",
                 "read status %u, first word %x", re, rd<u32>(RBUF));
    fill(RBUF, 0, 512);
    const u8 rz = d.request(T_IN, 0, RBUF, 512);
    bool same = rz == 0;
    for (u32 i = 0; i < 128; i++) same = same && rd<u32>(RBUF + i * 4) == first[i];
    checks.check(same, "sector 0 unchanged", "read status %u, first word %x", rz, rd<u32>(RBUF));

    // Floods: 42 requests (126 of 128 descriptors) at once, one notify, all answered.
    constexpr u32 SLOTS = 42;
    constexpr u32 FHDR = BUFS + 0x400, FSTATUS = BUFS + 0x800;
    const u64 floods = cmdline_u64("floods", 50);
    Desc* t = d.desc();
    u32 wrong = 0, lost = 0, bad_data = 0;
    for (u64 f = 0; f < floods; f++) {
        for (u32 i = 0; i < SLOTS; i++) {
            const u32 kind = i % 3;   // 0: out of range write, 1: in-range write, 2: in-range read
            const u64 sector = kind == 0 ? (i % 2 ? c + i : ~0ull - i) : c - 1 - (i + f) % 8;
            wr<u32>(FHDR + i * 16, kind == 2 ? T_IN : T_OUT);
            wr<u32>(FHDR + i * 16 + 4, 0);
            wr<u32>(FHDR + i * 16 + 8, u32(sector));
            wr<u32>(FHDR + i * 16 + 12, u32(sector >> 32));
            wr<u8>(FSTATUS + i, 0xff);
            if (kind == 2) fill(RBUF + i * 512, 0, 512);
            const u32 data = kind == 0 ? WBUF : kind == 1 ? EBUF : RBUF + i * 512;
            t[3 * i] = {FHDR + i * 16, 16, F_NEXT, u16(3 * i + 1)};
            t[3 * i + 1] = {data, 512, u16(F_NEXT | (kind == 2 ? F_WRITE : 0)), u16(3 * i + 2)};
            t[3 * i + 2] = {FSTATUS + i, 1, F_WRITE, 0};
            wr<u16>(d.avail_ring() + 4 + (d.avail % RANGE_QSIZE) * 2, u16(3 * i));
            d.avail++;
        }
        asm volatile("" ::: "memory");
        wr<u16>(d.avail_ring() + 2, d.avail);
        d.kick();
        u32 got = 0;
        for (u32 spin = 0; spin < 1000000 && got < SLOTS; spin++) {
            const u16 used_idx = rd<u16>(d.used_ring() + 2);
            while (d.used != used_idx) {
                d.used++;
                got++;
            }
        }
        lost += SLOTS - got;
        for (u32 i = 0; i < SLOTS; i++) {
            const u8 st = rd<u8>(FSTATUS + i);
            if (st != (i % 3 == 0 ? 1 : 0)) wrong++;
            if (i % 3 == 2 && st == 0 && !all(RBUF + i * 512, EDGE, 512)) bad_data++;
        }
        if (got < SLOTS) break;
    }
    checks.check(!wrong && !lost && !bad_data, "floods: every request answered, IOERR exactly out of range",
                 "%llu floods of %u: %u unanswered, %u wrong statuses, %u reads with wrong data, status %x", floods,
                 SLOTS, lost, wrong, bad_data, d.status());
    return 0;
}

// Sequential 4 KiB reads at queue depth qd: slot i owns descriptors 3i..3i+2 (header,
// data, status). Offers every free slot, notifies once, polls the used ring.
u32 run_bench(Disk& d)
{
    constexpr u16 BENCH_QSIZE = 128;
    constexpr u32 BHDR = BUFS + 0x400, BSTATUS = BUFS + 0x800;
    const u64 want = cmdline_u64("qd", 1);
    const u32 qd = want < 1 ? 1 : want > 32 ? 32 : u32(want);
    const u64 count = cmdline_u64("count", 4096);
    const bool random = cmdline_u64("rand", 0) != 0, write = cmdline_u64("write", 0) != 0;
    if (!d.start(BENCH_QSIZE)) {
        printf("vblk: FAIL bench: device does not start (status %x)\n", d.status());
        return 1;
    }
    const u64 sectors = d.capacity & ~7ull;
    Desc* t = d.desc();
    for (u32 i = 0; i < qd; i++) {
        t[3 * i] = {BHDR + i * 16, 16, F_NEXT, u16(3 * i + 1)};
        t[3 * i + 1] = {DATA + i * 4096, 4096, u16(F_NEXT | (write ? 0 : F_WRITE)), u16(3 * i + 2)};
        t[3 * i + 2] = {BSTATUS + i, 1, F_WRITE, 0};
    }
    u64 next = 0, sector = 0, done = 0, errors = 0;
    u64 lcg = 0x2545f4914f6cdd1dull;   // the same offsets every run
    u32 free[32], nfree = 0;
    for (u32 i = 0; i < qd; i++) free[nfree++] = i;
    u32 idle = 0;   // polls without progress: the device answers synchronously, so few
    const u64 t0 = rdtsc();
    while (done < count) {
        bool offered = false;
        while (nfree && next < count) {
            const u32 i = free[--nfree];
            wr<u32>(BHDR + i * 16, write ? T_OUT : T_IN);
            wr<u32>(BHDR + i * 16 + 4, 0);
            wr<u32>(BHDR + i * 16 + 8, u32(sector));
            wr<u32>(BHDR + i * 16 + 12, u32(sector >> 32));
            wr<u8>(BSTATUS + i, 0xff);
            wr<u16>(d.avail_ring() + 4 + (d.avail % BENCH_QSIZE) * 2, u16(3 * i));
            d.avail++;
            if (random) {
                lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
                sector = ((lcg >> 33) % (sectors / 8)) * 8;
            } else {
                sector = sector + 8 >= sectors ? 0 : sector + 8;
            }
            next++;
            offered = true;
        }
        if (offered) {
            asm volatile("" ::: "memory");
            wr<u16>(d.avail_ring() + 2, d.avail);
            d.kick();
        }
        const u16 used_idx = rd<u16>(d.used_ring() + 2);
        if (d.used == used_idx && !offered && ++idle > 1000000) break;   // lost (status read only now)
        while (d.used != used_idx) {
            const u32 head = rd<u32>(d.used_ring() + 4 + (d.used % BENCH_QSIZE) * 8);
            const u32 i = head / 3;
            if (rd<u8>(BSTATUS + i) != 0) errors++;
            free[nfree++] = i;
            d.used++;
            done++;
            idle = 0;
        }
    }
    const u64 t1 = rdtsc();
    printf("vblk: bench qd=%u requests=%llu errors=%llu tsc=%llu\n", qd, done, errors, t1 - t0);
    checks.check(done == count && !errors, write ? "bench writes" : "bench reads", "%llu of %llu done, %llu errors, status %x", done, count,
                 errors, d.status());
    return 0;
}

}  // namespace

u32 guest_main()
{
    Disk d;
    if (!d.probe(1)) {
        printf("vblk: no virtio-blk function at PCI device 1\n");
        return 1;
    }
    const char* mode = "";
    usize n = 0;
    if (cmdline_value("mode", &mode, &n) && n == 7 && !__builtin_memcmp(mode, "hostile", 7))
        run_hostile(d);
    else if (n == 5 && !__builtin_memcmp(mode, "bench", 5))
        run_bench(d);
    else if (n == 5 && !__builtin_memcmp(mode, "range", 5))
        run_range(d);
    else
        run_io(d);
    return checks.finish();
}
