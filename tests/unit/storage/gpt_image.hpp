// A disk image in memory with a GPT written the way tools write one (protective
// MBR, primary header and entries, backup entries and header at the end), for
// the GPT tests and the fuzzer's seeds.
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "kernel/lib/bytes.hpp"
#include "kernel/lib/crc32.hpp"
#include "kernel/storage/gpt.hpp"

namespace gpt::test {

struct Entry {
    u32 slot = 1;              // 1-based position in the array
    Guid type, unique;
    u64 first = 0, last = 0;
    std::string name;          // ASCII, stored as UTF-16LE
};

class Image : public BlockSource {
public:
    Image(u32 bs, u64 count) : d(bs * count, 0), bs_(bs), count_(count) {}

    u32 block_size() const override { return bs_; }
    u64 block_count() const override { return count_; }
    Status read(u64 lba, u8 *dst) override
    {
        reads++;
        if (lba >= count_ || lba == fail_lba) return Err::range;
        std::memcpy(dst, d.data() + lba * bs_, bs_);
        return {};
    }

    u8 *block(u64 lba) { return d.data() + lba * bs_; }

    // Write MBR, both headers and both arrays. first_usable/last_usable 0: the usual ones.
    void write(const std::vector<Entry> &entries, u32 count = 128, u32 esize = 128, u64 first_usable = 0,
               u64 last_usable = 0)
    {
        const u64 array_blocks = (u64(count) * esize + bs_ - 1) / bs_;
        if (!first_usable) first_usable = 2 + array_blocks;
        if (!last_usable) last_usable = count_ - 2 - array_blocks;
        // Protective MBR.
        u8 *m = block(0);
        m[446 + 4] = 0xee;
        store_le(m + 446 + 8, 1, 4);
        store_le(m + 446 + 12, u32(count_ - 1 > 0xffffffff ? 0xffffffff : count_ - 1), 4);
        m[510] = 0x55;
        m[511] = 0xaa;
        std::vector<u8> array(u64(count) * esize, 0);
        for (const Entry &e : entries) {
            u8 *p = array.data() + u64(e.slot - 1) * esize;
            std::memcpy(p, e.type.b, 16);
            std::memcpy(p + 16, e.unique.b, 16);
            store_le(p + 32, e.first, 8);
            store_le(p + 40, e.last, 8);
            for (size_t i = 0; i < e.name.size() && i < 36; i++) store_le(p + 56 + 2 * i, u8(e.name[i]), 2);
        }
        const u32 array_crc = crc32(array.data(), array.size());
        const u64 backup_array = count_ - 1 - array_blocks;
        std::memcpy(block(2), array.data(), array.size());
        std::memcpy(block(backup_array), array.data(), array.size());
        header(1, count_ - 1, 2, first_usable, last_usable, count, esize, array_crc);
        header(count_ - 1, 1, backup_array, first_usable, last_usable, count, esize, array_crc);
    }

    // Recompute the CRC of the header at lba (after a test changed a field).
    void reseal(u64 lba)
    {
        u8 *h = block(lba);
        store_le(h + 16, 0, 4);
        const u32 size = load_u32(h + 12);
        store_le(h + 16, crc32(h, size < bs_ ? size : bs_), 4);
    }

    int reads = 0;
    u64 fail_lba = ~u64(0);
    std::vector<u8> d;

private:
    void header(u64 at, u64 alt, u64 array, u64 fu, u64 lu, u32 count, u32 esize, u32 array_crc)
    {
        u8 *h = block(at);
        std::memset(h, 0, bs_);
        std::memcpy(h, "EFI PART", 8);
        store_le(h + 8, 0x00010000, 4);
        store_le(h + 12, 92, 4);
        store_le(h + 24, at, 8);
        store_le(h + 32, alt, 8);
        store_le(h + 40, fu, 8);
        store_le(h + 48, lu, 8);
        for (int i = 0; i < 16; i++) h[56 + i] = u8(0xd0 + i);
        store_le(h + 72, array, 8);
        store_le(h + 80, count, 4);
        store_le(h + 84, esize, 4);
        store_le(h + 88, array_crc, 4);
        reseal(at);
    }

    u32 bs_;
    u64 count_;
};

inline Guid guid_of(const char *text)
{
    Guid g;
    parse_guid(StrView{text, 36}, g);
    return g;
}

inline const char *LINUX_FS = "0fc63daf-8483-4772-8e79-3d69d8477de4";

} // namespace gpt::test
