// libFuzzer target for the split virtqueue and virtio-blk: the input is a
// small guest's RAM (rings, descriptors, indirect tables, requests) and the
// queue's set-up; the blk device services the queue over a small RAM disk.
//
// Input: byte 0 = queue size log2 (bits 0-2, clamped to 16 entries), bit 3
// INDIRECT_DESC, bit 4 EVENT_IDX, bit 5 read-only disk, bit 6 rings placed from
// byte 1 (else the fixed places below); then the RAM image from gpa 0x1000.
// Guest RAM is two 4 KiB extents with a hole between, [0x1000, 0x2000) and
// [0x3000, 0x4000), each inside a host buffer with guard bytes; the disk too.
// Whatever the input, nothing outside RAM or the disk may change (checked on
// the guards; GuestMemory is the only way in), and the queue either works or
// stops with a reason. Any broken invariant traps.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernel/virtio/blk.hpp"
#include "tests/fuzz/guarded.hpp"

namespace {

using namespace virtio;

constexpr u64 RAM_A = 0x1000, RAM_B = 0x3000, EXT = 0x1000;
constexpr u64 DISK = 8 * 512;

using fuzz::check;
using fuzz::Guarded;

Guarded<EXT> ram_a, ram_b, disk;   // disk uses DISK of EXT bytes

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    const u8 ctl = data[0];
    const u32 qsize = 1u << min(ctl & 7, 4);
    const u64 features = F_VERSION_1 | (ctl & 8 ? F_INDIRECT_DESC : 0) | (ctl & 16 ? F_EVENT_IDX : 0);
    const bool ro = ctl & 32;

    ram_a.init();
    ram_b.init();
    disk.init();
    memset(ram_a.mid(), 0, EXT);
    memset(ram_b.mid(), 0, EXT);
    for (u64 i = 0; i < DISK; i++) disk.mid()[i] = u8(i);
    const u8 *img = data + 1;
    const usize n = size - 1;
    memcpy(ram_a.mid(), img, min<usize>(n, EXT));
    if (n > EXT) memcpy(ram_b.mid(), img + EXT, min<usize>(n - EXT, EXT));

    GuestMemory mem;
    check(mem.add(GuestPhys(RAM_A), EXT, ram_a.mid()).ok());
    check(mem.add(GuestPhys(RAM_B), EXT, ram_b.mid()).ok());

    // Rings at fixed places, or anywhere (even outside RAM) when the input asks.
    u64 desc = 0x1000, avail = 0x1100, used = 0x1200;
    if ((ctl & 64) && n >= 6) {
        desc = 0x1000 + u64(img[0]) * 16;
        avail = 0x1000 + u64(img[1] | img[2] << 8) * 2;
        used = 0x1000 + u64(img[3] | img[4] << 8) * 4;
    }

    Virtqueue vq(&mem);
    vq.reset();
    vq.set_size(qsize);
    vq.set_rings(desc, avail, used);
    vq.set_features(features);
    BlkDevice blk(disk.mid(), DISK, ro);

    if (vq.enable()) {
        for (int round = 0; round < 3; round++) {
            BlkDevice::Serviced s = blk.service(vq);
            if (vq.error() != VqError::none) {
                check(!vq.enabled() && !s.notify);
                break;
            }
            // No check on s.again: the rings may overlap each other and the
            // buffers, so the device's own writes can make more chains available.
        }
    } else {
        check(vq.error() == VqError::bad_size || vq.error() == VqError::ring_unaligned ||
              vq.error() == VqError::ring_outside_ram);
    }
    check(vq_error_text(vq.error()) != nullptr);

    const BlkStats st = blk.stats();
    check(st.bytes_read <= st.requests * Virtqueue::MAX_CHAIN_BYTES);
    check(!ro || st.bytes_written == 0);
    check(ram_a.ok() && ram_b.ok() && disk.ok());
    for (u64 i = DISK; i < EXT; i++) check(disk.mid()[i] == 0xcc);   // past the disk's end
    if (ro)
        for (u64 i = 0; i < DISK; i++) check(disk.mid()[i] == u8(i));
    return 0;
}
