// Page-table entry formats for the engine in ptab.hpp. A format only knows
// its bits: how a table pointer and a leaf look, how an attribute is encoded
// and decoded, and how a large leaf becomes the first of its smaller pieces.
// All walking, allocation and splitting lives once, in the engine.
//
// Levels are numbered from the leaves: level 1 entries map 4 KiB, level 2
// 2 MiB, level 3 1 GiB, level 4 is the root (PML4 / EPT PML4 / ...).
#pragma once

#include "kernel/lib/types.hpp"

// The caching policy of a mapping. (Not "MemType": that is the E820 kind.)
enum class CacheType : u8 { wb, uc, wc, wt, wp };

struct Perm {
    bool r = true, w = false, x = false, user = false, global = false;
    constexpr bool operator==(const Perm &) const = default;
};

struct Attr {
    Perm perm;
    CacheType cache = CacheType::wb;
    constexpr bool operator==(const Attr &) const = default;
};

// Keel programs IA32_PAT on every CPU with this value. Entry i (byte i) is
// selected by PAT:PCD:PWT = i:
//   0 WB  1 WT  2 UC-  3 UC  4 WB  5 WT  6 WC  7 WP
// Entries 0-3 equal the power-on default, so PAT=0 entries mean the same
// with or without it. The nested walk of AMD NPT uses the host PAT too.
inline constexpr u64 HOST_PAT_VALUE = 0x0501'0406'0007'0406ull;

// What the formats have in common: four levels of 512 entries, addresses in
// bits 12-51, superpages up to 1 GiB (the engine caps this from CPUID).
struct FormatBase {
    static constexpr unsigned levels = 4;
    static constexpr unsigned max_leaf = 3;
    static constexpr u64 ADDR = 0x000f'ffff'ffff'f000ull;

    static constexpr u64 level_size(unsigned level) { return u64(1) << (PAGE_SHIFT + 9 * (level - 1)); }
    static constexpr PhysAddr table_addr(u64 e) { return PhysAddr(e & ADDR); }
    static constexpr PhysAddr leaf_addr(u64 e, unsigned level) { return PhysAddr(e & ADDR & ~(level_size(level) - 1)); }
    // The large-page bit (7) is meaningful at levels 2..max_leaf only.
    static constexpr bool large(u64 e, unsigned level) { return level > 1 && level <= max_leaf && (e & (1u << 7)); }
};

// x86-64 paging bits, shared by Keel's own tables and AMD nested paging.
struct X86Bits : FormatBase {
    static constexpr u64 P = 1, RW = 2, US = 4, PWT = 8, PCD = 16, A = 32, D = 64, PS = 128;
    static constexpr u64 PAT_4K = 128, G = 256, PAT_LARGE = 1u << 12, NX = 1ull << 63;

    static constexpr bool present(u64 e) { return e & P; }
    static constexpr bool is_leaf(u64 e, unsigned level) { return present(e) && (level == 1 || large(e, level)); }
    // Present means readable; write-only or execute-only cannot be expressed.
    static constexpr bool supports(Attr a) { return a.perm.r; }
    // Tables grant everything; the leaf decides (x86 ANDs the levels).
    static constexpr u64 make_table(PhysAddr t) { return (t.raw() & ADDR) | P | RW | US; }

    static constexpr u64 pat_bit(unsigned level) { return level == 1 ? PAT_4K : PAT_LARGE; }

    // The HOST_PAT_VALUE index for each cache type, as PAT:PCD:PWT.
    static constexpr u64 cache_bits(CacheType c, unsigned level)
    {
        switch (c) {
        case CacheType::wb: return 0;
        case CacheType::wt: return PWT;                             // 1
        case CacheType::uc: return PCD | PWT;                       // 3
        case CacheType::wc: return pat_bit(level) | PCD;            // 6
        case CacheType::wp: return pat_bit(level) | PCD | PWT;      // 7
        }
        return PCD | PWT;
    }
    static constexpr CacheType cache_of(u64 e, unsigned level)
    {
        switch ((e & pat_bit(level) ? 4 : 0) | (e & PCD ? 2 : 0) | (e & PWT ? 1 : 0)) {
        case 0: case 4: return CacheType::wb;
        case 1: case 5: return CacheType::wt;
        case 6:         return CacheType::wc;
        case 7:         return CacheType::wp;
        default:        return CacheType::uc;      // 2 (UC-) and 3 (UC)
        }
    }

    // Leaves are created accessed and dirty: Keel does not track either, and
    // it spares the walker a locked update on first use.
    static constexpr u64 leaf_bits(PhysAddr pa, Attr a, unsigned level)
    {
        return (pa.raw() & ADDR) | P | A | D | (a.perm.w ? RW : 0) | (a.perm.x ? 0 : NX) |
               cache_bits(a.cache, level) | (level > 1 ? PS : 0);
    }
    static constexpr Perm perm_of(u64 e) { return Perm{true, bool(e & RW), !(e & NX), false, false}; }

    // A large leaf of `level` as the first leaf of the level below.
    static constexpr u64 demote(u64 e, unsigned level)
    {
        if (level - 1 > 1) return e;
        return (e & ~(PS | PAT_LARGE)) | (e & PAT_LARGE ? PAT_4K : 0);
    }
};

// Keel's own address space: 4-level paging, 48-bit canonical addresses.
// NX needs EFER.NXE; G needs CR4.PGE.
struct HostFormat : X86Bits {
    static constexpr bool canonical = true;

    static constexpr u64 make_leaf(PhysAddr pa, Attr a, unsigned level)
    {
        return leaf_bits(pa, a, level) | (a.perm.user ? US : 0) | (a.perm.global ? G : 0);
    }
    static constexpr Attr leaf_attr(u64 e, unsigned level)
    {
        Perm p = perm_of(e);
        p.user = e & US;
        p.global = e & G;
        return Attr{p, cache_of(e, level)};
    }
};

// AMD nested page tables (guest-physical to host-physical): the same layout,
// but every guest access is a user access, so US is set everywhere and G is
// never used. perm.user and perm.global are ignored.
struct NptFormat : X86Bits {
    static constexpr bool canonical = false;

    static constexpr u64 make_leaf(PhysAddr pa, Attr a, unsigned level) { return leaf_bits(pa, a, level) | US; }
    static constexpr Attr leaf_attr(u64 e, unsigned level) { return Attr{perm_of(e), cache_of(e, level)}; }
};

// Intel EPT: R W X in bits 0-2, the memory type in bits 3-5 of leaves, large
// pages by bit 7. The ignore-PAT bit stays clear, so the guest's PAT combines
// with the EPT type (UC in EPT stays UC whatever the guest says).
// Execute-only pages need IA32_VMX_EPT_VPID_CAP bit 0; perm.user/global are ignored.
struct EptFormat : FormatBase {
    static constexpr bool canonical = false;
    static constexpr u64 R = 1, W = 2, X = 4, RWX = 7, IPAT = 64, PS = 128;
    static constexpr unsigned MT_SHIFT = 3;
    static constexpr u64 MT_UC = 0, MT_WC = 1, MT_WT = 4, MT_WP = 5, MT_WB = 6;

    // The EPT pointer for a root built with this format: WB walks, 4 levels.
    static constexpr u64 eptp(PhysAddr root) { return (root.raw() & ADDR) | MT_WB | (levels - 1) << 3; }

    static constexpr bool present(u64 e) { return e & RWX; }
    static constexpr bool is_leaf(u64 e, unsigned level) { return present(e) && (level == 1 || large(e, level)); }
    // Something must be allowed, and writable-but-not-readable is a misconfiguration.
    static constexpr bool supports(Attr a) { return (a.perm.r || a.perm.w || a.perm.x) && !(a.perm.w && !a.perm.r); }
    static constexpr u64 make_table(PhysAddr t) { return (t.raw() & ADDR) | RWX; }

    static constexpr u64 memtype(CacheType c)
    {
        switch (c) {
        case CacheType::wb: return MT_WB;
        case CacheType::uc: return MT_UC;
        case CacheType::wc: return MT_WC;
        case CacheType::wt: return MT_WT;
        case CacheType::wp: return MT_WP;
        }
        return MT_UC;
    }
    static constexpr u64 make_leaf(PhysAddr pa, Attr a, unsigned level)
    {
        return (pa.raw() & ADDR) | (a.perm.r ? R : 0) | (a.perm.w ? W : 0) | (a.perm.x ? X : 0) |
               memtype(a.cache) << MT_SHIFT | (level > 1 ? PS : 0);
    }
    static constexpr Attr leaf_attr(u64 e, unsigned level)
    {
        CacheType c;
        switch ((e >> MT_SHIFT) & 7) {
        case MT_WB: c = CacheType::wb; break;
        case MT_WC: c = CacheType::wc; break;
        case MT_WT: c = CacheType::wt; break;
        case MT_WP: c = CacheType::wp; break;
        default:    c = CacheType::uc; break;
        }
        return Attr{Perm{bool(e & R), bool(e & W), bool(e & X), false, false}, c};
    }
    static constexpr u64 demote(u64 e, unsigned level) { return level - 1 > 1 ? e : e & ~PS; }
};

// VT-d second-level tables (DMA remapping): R and W in bits 0-1, super pages
// by bit 7. A device has no cache type or execute right here: leaf_attr
// reports WB and no X, and perm.x/user/global/cache are ignored. The snoop
// bit (11, needs ECAP.SC) is not used. Context entries must say AW=2
// (4 levels, 48 bits); superpage support is SLLPS in the capability register.
struct DmarFormat : FormatBase {
    static constexpr bool canonical = false;
    static constexpr u64 R = 1, W = 2, SP = 128, SNP = 1u << 11;

    static constexpr bool present(u64 e) { return e & (R | W); }
    static constexpr bool is_leaf(u64 e, unsigned level) { return present(e) && (level == 1 || large(e, level)); }
    static constexpr bool supports(Attr a) { return a.perm.r || a.perm.w; }
    static constexpr u64 make_table(PhysAddr t) { return (t.raw() & ADDR) | R | W; }
    static constexpr u64 make_leaf(PhysAddr pa, Attr a, unsigned level)
    {
        return (pa.raw() & ADDR) | (a.perm.r ? R : 0) | (a.perm.w ? W : 0) | (level > 1 ? SP : 0);
    }
    static constexpr Attr leaf_attr(u64 e, unsigned)
    {
        return Attr{Perm{bool(e & R), bool(e & W), false, false, false}, CacheType::wb};
    }
    static constexpr u64 demote(u64 e, unsigned level) { return level - 1 > 1 ? e : e & ~SP; }
};
