// GUID Partition Table (UEFI 2.10, 5.3): the partitions of a disk, read
// through a block callback so it works on any device (an NVMe namespace, a
// disk image in memory). Everything on the disk is untrusted input.
//
// What is checked, in order:
//  - LBA 0 is a protective MBR: signature 55 AA and a partition record of type 0xEE;
//  - the primary header at LBA 1: signature "EFI PART", revision 1.x, a header
//    size of 92 bytes up to a block, its CRC32 (computed with the CRC field
//    zeroed), MyLBA = 1, a usable range inside the disk that holds neither
//    header, an entry array (entries of 128 * 2^n bytes up to a block, at most
//    MAX_ENTRIES of them) inside the disk, outside the usable range, and the
//    CRC32 over the whole array;
//  - each used entry (type GUID not zero): first <= last, inside the usable
//    range, overlapping no other; at most MAX_PARTITIONS used entries.
// When anything about the primary table is wrong, the backup header at the
// disk's last LBA (MyLBA = last) and its entry array are checked the same way
// and used instead; `used_backup` says so and the report says why.
#pragma once

#include "kernel/firmware/cmdline.hpp"
#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"
#include "kernel/storage/guid.hpp"

namespace gpt {

inline constexpr u32 MAX_ENTRIES = 4096;        // in the array (128 is the usual count)
inline constexpr u32 MAX_PARTITIONS = 128;      // used entries Keel keeps
inline constexpr u32 NAME_UNITS = 36;           // UTF-16 code units of a name
inline constexpr u32 MIN_BLOCK = 512, MAX_BLOCK = 65536;

// The device: block_size a power of two in MIN_BLOCK..MAX_BLOCK.
class BlockSource {
public:
    virtual u32 block_size() const = 0;
    virtual u64 block_count() const = 0;
    // One block into dst (block_size() bytes).
    virtual Status read(u64 lba, u8 *dst) = 0;

protected:
    ~BlockSource() = default;
};

struct Partition {
    u32 index = 0;            // 1-based slot in the entry array: nvme0n1p<index>
    Guid type;
    Guid unique;
    u64 first_lba = 0;        // inclusive
    u64 last_lba = 0;         // inclusive
    u64 attributes = 0;
    u16 name[NAME_UNITS] = {};   // UTF-16LE as stored, NUL-padded

    u64 blocks() const { return last_lba - first_lba + 1; }
    // The name as ASCII into out (NAME_UNITS + 1 bytes), other code units as '?'.
    void name_ascii(char *out) const;
};

struct Table {
    Guid disk;
    u64 first_usable = 0, last_usable = 0;
    u32 entry_count = 0, entry_size = 0;
    bool used_backup = false;
    u32 n = 0;                               // used entries in part[], by increasing index
    Partition part[MAX_PARTITIONS];
};

struct Report {
    char msg[128];
};

// Read the table. `scratch` holds one block (block_size bytes). Errors:
// Err::invalid (no protective MBR, or neither header usable: the report says
// what was wrong with the primary and the backup), Err::bad_checksum (both
// copies fail a CRC), Err::unsupported (a block size out of range, more than
// MAX_PARTITIONS used entries), a read's own error. On success with the
// backup, the report says why the primary was not used.
Status parse(BlockSource &dev, u8 *scratch, Table &out, Report *why);

// Partition `index` (1-based, as in nvme0n1p2), else Err::not_found.
Result<const Partition *> by_index(const Table &t, u32 index);
// The one partition with this name (ASCII compared with its UTF-16 name):
// Err::not_found, or Err::exists when several have it.
Result<const Partition *> by_name(const Table &t, StrView name);
// The one partition with this unique GUID (Err::not_found, Err::exists).
Result<const Partition *> by_guid(const Table &t, const Guid &g);

} // namespace gpt
