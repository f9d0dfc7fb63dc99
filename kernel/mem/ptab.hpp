// The page-table engine: walking, mapping, splitting and unmapping written
// once, for every entry Format in ptab_formats.hpp (Keel's own paging, EPT,
// NPT, VT-d second level). Tables come from a Memory policy, so the host
// tests run this very header over fake physical memory:
//
//   Result<PhysAddr> alloc_table();   a zeroed 4 KiB page
//   void free_table(PhysAddr);        give one back (see "Freeing" below)
//   u64 *table(PhysAddr);             where its 512 entries are accessed
//   void note_write(PhysAddr t, unsigned i, u64 v);   optional: called after
//       every entry store, e.g. to clflush for an IOMMU that does not snoop
//
// Addresses are u64. For canonical formats (HostFormat) they are 48-bit
// sign-extended virtual addresses; for the others plain 48-bit addresses.
//
// Every mutating call checks first and then changes: an error means nothing
// changed. The tables a call needs (new levels for map, the pieces of split
// superpages for unmap and protect) are counted and allocated up front.
//
// Concurrency: entries are accessed with atomics. map() may run concurrently
// with map() of other ranges: a new table is installed by compare-and-swap
// and the loser gives its table back. protect() needs the caller's lock
// against other mutators; unmap() and destroy() (which free tables) against
// every other call.
//
// Superpage sizes: pass max_leaf_level from the hardware (host: 1 GiB pages
// if CPUID 8000_0001h EDX[26]; EPT: IA32_VMX_EPT_VPID_CAP bits 16/17; VT-d:
// CAP.SLLPS; NPT follows the host CPUID).
//
// Freeing: unmap() frees tables that it leaves empty. Until the caller's TLB
// flush (which unmap() asks for) a hardware walker may still hold such a
// table, so a Mem policy for a live address space must not reuse freed
// tables before that flush (e.g. queue them and release after the shootdown).
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/mem/ptab_formats.hpp"

template <class Format, class Mem>
class PageTable {
    using F = Format;
    static constexpr unsigned LEVELS = F::levels;
    static constexpr unsigned ENTRIES = 512;
    static constexpr unsigned VA_BITS = PAGE_SHIFT + 9 * LEVELS;
    static constexpr u64 SPAN = u64(1) << VA_BITS;
    static constexpr u64 PA_LIMIT = u64(1) << 52;

public:
    struct Lookup {
        u64 pa = 0;
        Attr attr;
        unsigned level = 0;
        u64 page_size = 0;
    };

    static constexpr u64 page_size(unsigned level) { return F::level_size(level); }

    // max_leaf_level: 1 = 4 KiB only, 2 = up to 2 MiB, 3 = up to 1 GiB; capped to what the format allows.
    PageTable(Mem &mem, unsigned max_leaf_level)
        : mem_(mem), max_leaf_(min(max(max_leaf_level, 1u), F::max_leaf)) {}

    PageTable(const PageTable &) = delete;
    PageTable &operator=(const PageTable &) = delete;

    Status init()
    {
        if (live_) return Err::exists;
        auto r = mem_.alloc_table();
        if (!r) return r.error();
        root_ = *r;
        live_ = true;
        return {};
    }

    PhysAddr root() const { return root_; }
    unsigned max_leaf_level() const { return max_leaf_; }

    // Map [va, va+size) to [pa, pa+size) with the largest pages that alignment,
    // size and max_leaf_level allow. Err::exists if anything in the range is
    // mapped, Err::no_memory if tables run out; either way nothing changed.
    // Err::invalid for unaligned or non-canonical input, Err::range for a
    // range leaving the address space, Err::unsupported for an Attr the
    // format cannot express.
    Status map(u64 va, u64 pa, u64 size, Attr attr)
    {
        if (!live_) return Err::invalid;
        auto s = check_range(va, size);
        if (!s) return s.error();
        if (pa & (PAGE_SIZE - 1)) return Err::invalid;
        if (pa >= PA_LIMIT || size > PA_LIMIT - pa) return Err::range;
        if (!F::supports(attr)) return Err::unsupported;
        Fill w{pa - *s, attr};
        u64 e = *s + size, need = 0;
        KEEL_TRY(check_free(root_, LEVELS, *s, e, w, need));
        Spares sp;
        KEEL_TRY(reserve(sp, need));
        u64 done = *s;
        Status st = fill(root_, LEVELS, *s, e, w, sp, done);
        if (!st) {
            // Only when a concurrent map() of an overlapping range won a slot
            // (a caller bug): take back what this call installed.
            Change undo{false, {}, false, false};
            (void)change(root_, LEVELS, *s, done, undo, sp);
        }
        release(sp);
        return st;
    }

    // Unmap [va, va+size). A superpage only partly covered is split first:
    // a fully pre-filled table replaces it in one atomic step. Holes are fine.
    // Returns whether a present entry changed (the caller must flush the TLB).
    // reclaim false: tables left empty stay in place (freed by destroy()), for a
    // live address space whose walkers may still hold them until that flush.
    Result<bool> unmap(u64 va, u64 size, bool reclaim = true)
    {
        Change c{false, {}, reclaim, false};
        KEEL_TRY(apply(va, size, c));
        return c.flush;
    }

    // Give every mapping in [va, va+size) the attributes `attr`, keeping its
    // frame; superpages only partly covered are split. Holes are skipped.
    // Returns whether an entry changed (the caller must flush the TLB).
    Result<bool> protect(u64 va, u64 size, Attr attr)
    {
        if (!F::supports(attr)) return Err::unsupported;
        Change c{true, attr, false, false};
        KEEL_TRY(apply(va, size, c));
        return c.flush;
    }

    // Err::not_found when unmapped, Err::invalid for a non-canonical address.
    Result<Lookup> lookup(u64 va) const
    {
        auto ix = index_of(va);
        if (!ix) return ix.error();
        if (!live_) return Err::not_found;
        PhysAddr t = root_;
        for (unsigned level = LEVELS; level; --level) {
            u64 e = load(t, index(*ix, level));
            if (!F::present(e)) break;
            if (F::is_leaf(e, level)) {
                u64 sz = page_size(level);
                return Lookup{F::leaf_addr(e, level).raw() + (*ix & (sz - 1)), F::leaf_attr(e, level), level, sz};
            }
            t = F::table_addr(e);
        }
        return Err::not_found;
    }

    // The table at `level` (1 .. LEVELS-1) whose entries cover va, made (empty) where absent:
    // a walker that starts below the root sees the part of this address space under it (a
    // VT-d unit with 3-level tables walks the first level-3 table of a 4-level one). It stays
    // for the table's life: unmap() with reclaim must not run over it. Err::exists where a
    // superpage covers va; Err::invalid for a level out of range.
    Result<PhysAddr> table_at(u64 va, unsigned level)
    {
        if (!live_) return Err::invalid;
        if (level < 1 || level >= LEVELS) return Err::invalid;
        auto ix = index_of(va);
        if (!ix) return ix.error();
        PhysAddr t = root_;
        for (unsigned l = LEVELS; l > level; --l) {
            const unsigned i = index(*ix, l);
            u64 e = load(t, i);
            if (!F::present(e)) {
                auto n = mem_.alloc_table();
                if (!n) return n.error();
                if (cas(t, i, e, F::make_table(*n))) e = F::make_table(*n);
                else mem_.free_table(*n);   // another call installed one first: e is it
            }
            if (F::is_leaf(e, l)) return Err::exists;
            t = F::table_addr(e);
        }
        return t;
    }

    // f(u64 va, u64 pa, u64 size, Attr attr) for every leaf, in address order.
    template <class Fn> void for_each_leaf(Fn &&f) const
    {
        if (live_) visit(root_, LEVELS, 0, f);
    }

    // Like for_each_leaf, but neighbouring leaves that continue each other
    // (virtually, physically and in attributes) are reported as one range.
    template <class Fn> void for_each_range(Fn &&f) const
    {
        u64 rva = 0, rpa = 0, rsize = 0;
        Attr ra;
        for_each_leaf([&](u64 va, u64 pa, u64 size, Attr a) {
            if (rsize && rva + rsize == va && rpa + rsize == pa && ra == a) {
                rsize += size;
                return;
            }
            if (rsize) f(rva, rpa, rsize, ra);
            rva = va, rpa = pa, rsize = size, ra = a;
        });
        if (rsize) f(rva, rpa, rsize, ra);
    }

    // Free every table, the root included (not the mapped frames).
    void destroy()
    {
        if (!live_) return;
        free_tree(root_, LEVELS);
        root_ = PhysAddr();
        live_ = false;
    }

private:
    struct Fill {
        u64 delta;     // pa - va (modulo 2^64)
        Attr attr;
    };
    struct Change {
        bool protect;  // else unmap
        Attr attr;
        bool reclaim;  // free tables left empty
        bool flush;    // a present entry changed
    };
    // Tables allocated ahead of a change, linked through their first word.
    struct Spares {
        PhysAddr head;
        u64 count = 0;
    };

    Mem &mem_;
    unsigned max_leaf_;
    PhysAddr root_;
    bool live_ = false;

    static constexpr unsigned index(u64 ix, unsigned level)
    {
        return (ix >> (PAGE_SHIFT + 9 * (level - 1))) & (ENTRIES - 1);
    }
    // End of the part of [v, e) inside v's slot at `level`.
    static constexpr u64 slot_end(u64 v, u64 e, unsigned level)
    {
        return min(align_down(v, page_size(level)) + page_size(level), e);
    }

    // ---- entries ----

    u64 *slot(PhysAddr t, unsigned i) const { return mem_.table(t) + i; }
    u64 load(PhysAddr t, unsigned i) const { return __atomic_load_n(slot(t, i), __ATOMIC_ACQUIRE); }
    void note(PhysAddr t, unsigned i, u64 v) const
    {
        if constexpr (requires(Mem &m) { m.note_write(t, i, v); }) mem_.note_write(t, i, v);
    }
    void store(PhysAddr t, unsigned i, u64 v)
    {
        __atomic_store_n(slot(t, i), v, __ATOMIC_RELEASE);
        note(t, i, v);
    }
    // On failure `expect` becomes the entry's current value.
    bool cas(PhysAddr t, unsigned i, u64 &expect, u64 v)
    {
        if (!__atomic_compare_exchange_n(slot(t, i), &expect, v, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return false;
        note(t, i, v);
        return true;
    }

    // ---- addresses ----

    // va -> position in [0, SPAN).
    Result<u64> index_of(u64 va) const
    {
        if constexpr (F::canonical) {
            u64 top = va >> (VA_BITS - 1);
            if (top != 0 && top != ~u64(0) >> (VA_BITS - 1)) return Err::invalid;
            return va & (SPAN - 1);
        } else {
            if (va >= SPAN) return Err::range;
            return va;
        }
    }
    // A canonical range must stay within its half.
    static constexpr u64 limit_of(u64 ix) { return F::canonical && ix < SPAN / 2 ? SPAN / 2 : SPAN; }
    static constexpr u64 va_of(u64 ix)
    {
        return F::canonical && (ix & SPAN / 2) ? ix | ~(SPAN - 1) : ix;
    }
    Result<u64> check_range(u64 va, u64 size) const
    {
        if ((va | size) & (PAGE_SIZE - 1)) return Err::invalid;
        auto ix = index_of(va);
        if (!ix) return ix.error();
        if (size > limit_of(*ix) - *ix) return Err::range;
        return *ix;
    }

    // ---- spare tables ----

    void push(Spares &sp, PhysAddr t)
    {
        store(t, 0, sp.head.raw());
        sp.head = t;
        sp.count++;
    }
    Result<PhysAddr> take(Spares &sp)
    {
        if (!sp.count) return Err::no_memory;   // miscounted: cannot happen
        PhysAddr t = sp.head;
        sp.head = PhysAddr(load(t, 0));
        store(t, 0, 0);
        sp.count--;
        return t;
    }
    Status reserve(Spares &sp, u64 n)
    {
        while (sp.count < n) {
            auto t = mem_.alloc_table();
            if (!t) {
                release(sp);
                return t.error();
            }
            push(sp, *t);
        }
        return {};
    }
    void release(Spares &sp)
    {
        while (sp.count) mem_.free_table(*take(sp));
    }

    // ---- map ----

    bool can_leaf(unsigned level, u64 v, u64 n, const Fill &w) const
    {
        u64 sz = page_size(level);
        return level <= max_leaf_ && n - v == sz && !((v | (v + w.delta)) & (sz - 1));
    }

    // New tables needed to map [v, n) below an empty entry of `level`.
    u64 tables_for(unsigned level, u64 v, u64 n, const Fill &w) const
    {
        if (can_leaf(level, v, n, w)) return 0;
        u64 c = 1;
        for (u64 x = v, y; x < n; x = y) {
            y = slot_end(x, n, level - 1);
            c += tables_for(level - 1, x, y, w);
        }
        return c;
    }

    // Is [s, e) unmapped? Counts the tables map() will add.
    Status check_free(PhysAddr t, unsigned level, u64 s, u64 e, const Fill &w, u64 &need) const
    {
        for (u64 v = s, n; v < e; v = n) {
            n = slot_end(v, e, level);
            u64 ent = load(t, index(v, level));
            if (F::is_leaf(ent, level)) return Err::exists;
            if (F::present(ent))
                KEEL_TRY(check_free(F::table_addr(ent), level - 1, v, n, w, need));
            else
                need += tables_for(level, v, n, w);
        }
        return {};
    }

    // Install [s, e); `done` follows the installed prefix.
    Status fill(PhysAddr t, unsigned level, u64 s, u64 e, const Fill &w, Spares &sp, u64 &done)
    {
        for (u64 v = s, n; v < e; v = n) {
            n = slot_end(v, e, level);
            unsigned i = index(v, level);
            u64 ent = load(t, i);
            if (!F::present(ent)) {
                if (can_leaf(level, v, n, w)) {
                    if (cas(t, i, ent, F::make_leaf(PhysAddr(v + w.delta), w.attr, level))) {
                        done = n;
                        continue;
                    }
                } else {
                    auto nt = take(sp);
                    if (!nt) return nt.error();
                    u64 tab = F::make_table(*nt);
                    if (cas(t, i, ent, tab))
                        ent = tab;
                    else
                        push(sp, *nt);      // another CPU was first: use its table
                }
            }
            if (!F::present(ent) || F::is_leaf(ent, level)) return Err::exists;
            KEEL_TRY(fill(F::table_addr(ent), level - 1, v, n, w, sp, done));
        }
        return {};
    }

    // ---- unmap / protect ----

    // The entry a protect() leaves in place of leaf `e`.
    static constexpr u64 reprotect(u64 e, unsigned level, Attr a)
    {
        return F::make_leaf(F::leaf_addr(e, level), a, level);
    }

    // Level of the leaf holding b that a change must split, 0 if none.
    unsigned cut_leaf(u64 b, const Change &c) const
    {
        if (b >= SPAN) return 0;
        PhysAddr t = root_;
        for (unsigned level = LEVELS; level > 1; --level) {
            u64 e = load(t, index(b, level));
            if (!F::present(e)) return 0;
            if (F::is_leaf(e, level))
                return (b & (page_size(level) - 1)) && !(c.protect && reprotect(e, level, c.attr) == e) ? level : 0;
            t = F::table_addr(e);
        }
        return 0;
    }

    // Tables that splitting at s and e takes: at each boundary the leaf that
    // holds it, then each smaller piece that still does; pieces that hold
    // both boundaries count once.
    u64 splits_needed(u64 s, u64 e, const Change &c) const
    {
        u64 split_piece[LEVELS + 1] = {};   // base + 1 of the piece split at each level for s
        u64 n = 0;
        const u64 bounds[2] = {s, e};
        for (u64 b : bounds) {
            for (unsigned l = cut_leaf(b, c); l > 1 && (b & (page_size(l) - 1)); --l) {
                u64 piece = align_down(b, page_size(l)) + 1;
                if (split_piece[l] != piece) n++;
                split_piece[l] = piece;
            }
        }
        return n;
    }

    Status apply(u64 va, u64 size, Change &c)
    {
        if (!live_) return Err::invalid;
        auto s = check_range(va, size);
        if (!s) return s.error();
        u64 e = *s + size;
        Spares sp;
        KEEL_TRY(reserve(sp, splits_needed(*s, e, c)));
        Status st = change(root_, LEVELS, *s, e, c, sp);
        release(sp);
        return st;
    }

    // Replace leaf `e` in slot i of t by a table of its 512 pieces, filled
    // before it becomes visible. Returns the entry now in the slot.
    Result<u64> split(PhysAddr t, unsigned i, unsigned level, u64 e, Spares &sp)
    {
        auto nt = take(sp);
        if (!nt) return nt.error();
        u64 tab = F::make_table(*nt), step = page_size(level - 1);
        for (;;) {
            u64 first = F::demote(e, level);
            for (unsigned k = 0; k < ENTRIES; k++) store(*nt, k, first + k * step);
            if (cas(t, i, e, tab)) return tab;
            if (!F::is_leaf(e, level)) {      // not while the caller holds its lock
                for (unsigned k = 0; k < ENTRIES; k++) store(*nt, k, 0);
                push(sp, *nt);
                return e;
            }
            // The walker set accessed/dirty bits meanwhile: copy again.
        }
    }

    bool empty(PhysAddr t) const
    {
        for (unsigned i = 0; i < ENTRIES; i++)
            if (F::present(load(t, i))) return false;
        return true;
    }

    Status change(PhysAddr t, unsigned level, u64 s, u64 e, Change &c, Spares &sp)
    {
        for (u64 v = s, n; v < e; v = n) {
            n = slot_end(v, e, level);
            unsigned i = index(v, level);
            u64 ent = load(t, i);
            if (F::is_leaf(ent, level)) {
                u64 now = c.protect ? reprotect(ent, level, c.attr) : 0;
                if (now == ent) continue;
                if (n - v == page_size(level)) {
                    store(t, i, now);
                    c.flush = true;
                    continue;
                }
                auto r = split(t, i, level, ent, sp);
                if (!r) return r.error();
                ent = *r;
            }
            if (!F::present(ent)) continue;
            PhysAddr sub = F::table_addr(ent);
            KEEL_TRY(change(sub, level - 1, v, n, c, sp));
            if (c.reclaim && empty(sub)) {
                store(t, i, 0);
                mem_.free_table(sub);
                c.flush = true;
            }
        }
        return {};
    }

    // ---- walks ----

    template <class Fn> void visit(PhysAddr t, unsigned level, u64 base, Fn &f) const
    {
        for (unsigned i = 0; i < ENTRIES; i++) {
            u64 e = load(t, i), v = base + i * page_size(level);
            if (F::is_leaf(e, level))
                f(va_of(v), F::leaf_addr(e, level).raw(), page_size(level), F::leaf_attr(e, level));
            else if (F::present(e))
                visit(F::table_addr(e), level - 1, v, f);
        }
    }

    void free_tree(PhysAddr t, unsigned level)
    {
        for (unsigned i = 0; level > 1 && i < ENTRIES; i++) {
            u64 e = load(t, i);
            if (F::present(e) && !F::is_leaf(e, level)) free_tree(F::table_addr(e), level - 1);
        }
        mem_.free_table(t);
    }
};
