// libFuzzer target for the DMAR parser (kernel/firmware/dmar). The input is
// the table after its 48-byte header: the harness puts a header in front
// (length field = the real length, width from the first input byte), so
// mutations reach the remapping structures. Invariants (a trap otherwise):
//  - the parser reads only inside the table (ASan: the table is an exact-size
//    heap copy);
//  - on success: 1..MAX_UNITS units with 4 KiB-aligned, distinct, non-zero
//    register bases, at most one INCLUDE_PCI_ALL unit per segment and it has
//    no PCI device scope; RMRRs aligned with base <= limit and at least one
//    PCI device scope; every unit's and RMRR's scopes inside the scope array,
//    each with 1..MAX_PATH hops of device <= 31, function <= 7; resolve()
//    never walks past the path;
//  - on failure the report is a non-empty NUL-terminated line.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "kernel/firmware/dmar.hpp"
#include "tests/fuzz/guarded.hpp"

using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    std::vector<u8> t(48 + size);
    memcpy(t.data(), "DMAR", 4);
    const u32 len = u32(t.size());
    memcpy(t.data() + 4, &len, 4);
    t[36] = size ? u8(31 + data[0] % 34) : 38;
    t[37] = size > 1 ? data[1] : 1;
    if (size) memcpy(t.data() + 48, data, size);
    auto *d = new dmar::Dmar;
    dmar::Report r;
    if (dmar::parse(t.data(), len, *d, &r).ok()) {
        check(d->n_units >= 1 && d->n_units <= dmar::MAX_UNITS && d->n_rmrrs <= dmar::MAX_RMRRS &&
              d->n_scopes <= dmar::MAX_SCOPES);
        auto scopes_ok = [&](u32 first, u32 n) {
            check(first <= d->n_scopes && n <= d->n_scopes - first);
            for (u32 i = first; i < first + n; i++) {
                const dmar::Scope &s = d->scopes[i];
                check(s.n_path >= 1 && s.n_path <= dmar::MAX_PATH);
                check(u8(s.type) >= 1 && u8(s.type) <= 5);
                for (u32 k = 0; k < s.n_path; k++) check(s.path[k].dev <= 31 && s.path[k].fn <= 7);
                u32 hops = 0;
                auto b = dmar::resolve(s, [&](u8, u8, u8) {
                    hops++;
                    return int(hops);
                });
                check(b.ok() && hops + 1 == s.n_path);
            }
        };
        for (u32 i = 0; i < d->n_units; i++) {
            const dmar::Unit &u = d->units[i];
            check(u.base.raw() && u.base.raw() % 4096 == 0);
            for (u32 j = 0; j < i; j++) {
                check(d->units[j].base.raw() != u.base.raw());
                check(!(u.include_all && d->units[j].include_all && u.segment == d->units[j].segment));
            }
            scopes_ok(u.first_scope, u.n_scopes);
            if (u.include_all)
                for (u32 k = 0; k < u.n_scopes; k++) {
                    const dmar::ScopeType st = d->scopes[u.first_scope + k].type;
                    check(st != dmar::ScopeType::endpoint && st != dmar::ScopeType::bridge);
                }
        }
        for (u32 i = 0; i < d->n_rmrrs; i++) {
            const dmar::Rmrr &m = d->rmrrs[i];
            check(m.base.raw() % 4096 == 0 && m.base.raw() <= m.limit && (m.limit + 1) % 4096 == 0);
            check(m.n_scopes >= 1);
            scopes_ok(m.first_scope, m.n_scopes);
        }
    } else {
        check(r.msg[0] != 0 && memchr(r.msg, 0, sizeof r.msg));
    }
    delete d;
    return 0;
}
