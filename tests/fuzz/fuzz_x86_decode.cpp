// libFuzzer target for the x86 instruction decoder. The first byte picks the
// CPU mode (and seeds the register file for ea()); the rest is decoded from an
// exactly-sized heap copy, so ASan catches any read past the given length.
// Any broken invariant traps.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernel/guest/x86_decode.hpp"

namespace {

using x86::CpuMode;
using x86::Insn;
using K = Insn::Kind;

void check(bool c)
{
    if (!c) __builtin_trap();
}

bool reg_ok(u8 r) { return r == Insn::NO_REG || r < 16; }
bool pow2_size(u8 s) { return s == 1 || s == 2 || s == 4 || s == 8; }

bool mem_kind(K k)
{
    return k == K::mov_load || k == K::mov_store || k == K::mov_store_imm || k == K::movzx ||
           k == K::movsx || k == K::xchg || k == K::invlpg;
}

void check_insn(const Insn &i, CpuMode m, size_t avail)
{
    bool l64 = m == CpuMode::long64;
    check(i.len >= 1 && i.len <= 15 && i.len <= avail);
    check(pow2_size(i.op_size));
    check(i.addr_size == 2 || i.addr_size == 4 || i.addr_size == 8);
    check(l64 ? i.addr_size != 2 : i.addr_size != 8);
    check(i.op_size != 8 || l64);
    check(i.rex == 0 || (l64 && (i.rex & 0xf0) == 0x40));
    check(!i.repne || i.rep);
    check(u8(i.segment) <= u8(x86::Seg::gs));
    check(u8(i.kind) <= u8(K::lods));

    check(i.has_modrm || (i.mod == 0 && i.reg == 0 && i.rm == 0));
    check(i.mod < 4 && i.reg < 16 && i.rm < 16);
    check(i.rex & 4 ? true : i.reg < 8 || (i.kind == K::mov_from_cr || i.kind == K::mov_to_cr));
    check(!i.high8 || (i.reg >= 4 && i.reg < 8 && !i.rex));
    check(!i.has_sib || (i.has_modrm && i.mod != 3 && i.addr_size != 2 && (i.rm & 7) == 4));
    check(reg_ok(i.base) && reg_ok(i.index));
    check(!i.rip_relative || (l64 && i.base == Insn::NO_REG && i.index == Insn::NO_REG));
    check(i.mem ? pow2_size(i.scale) : (i.base == Insn::NO_REG && i.index == Insn::NO_REG));
    check(!i.mem || i.has_modrm || i.disp_size == i.addr_size);   // ModRM or moffs
    check(i.mem || i.disp_size == 0);
    check(i.disp_size == 0 || pow2_size(i.disp_size));
    if (i.disp_size && i.disp_size < 8) {
        i64 lim = i64(1) << (8 * i.disp_size - 1);
        if (i.has_modrm) check(i.disp >= -lim && i.disp < lim);
        else check(u64(i.disp) < u64(lim) * 2);
    }
    if (!i.disp_size) check(i.disp == 0);

    check(i.has_imm == (i.imm_size != 0));
    check(i.imm_size <= 8 && i.imm_size != 5 && i.imm_size != 7);
    check(i.imm_size == 8 || i.imm < (u64(1) << (8 * i.imm_size)));
    check(1u + i.has_modrm + i.has_sib + i.disp_size + i.imm_size <= i.len);
    check(i.opcode <= 0xff || (i.opcode >> 8) == 0x0f || (i.opcode >> 8) == 0x0f38 ||
          (i.opcode >> 8) == 0x0f3a);

    if (mem_kind(i.kind)) check(i.mem);
    if (i.kind != K::other && !mem_kind(i.kind) && i.kind != K::lmsw && i.kind != K::smsw)
        check(!i.mem);
    switch (i.kind) {
    case K::in: case K::out:
        check(i.op_size == 1 || i.op_size == 2 || i.op_size == 4);
        check(i.port_in_dx != i.has_imm);
        check(i.port_in_dx || i.port == i.imm);
        break;
    case K::ins: case K::outs: case K::movs: case K::stos: case K::lods:
        check(i.mem_size == i.op_size && !i.has_modrm);
        break;
    case K::mov_load: case K::mov_store: case K::xchg: case K::mov_store_imm:
        check(i.mem_size == i.op_size);
        break;
    case K::movzx: case K::movsx:
        check(i.mem_size <= i.op_size && i.mem_size >= 1);
        break;
    case K::mov_to_cr: case K::mov_from_cr: case K::mov_to_dr: case K::mov_from_dr:
        check(i.op_size == (l64 ? 8 : 4));
        break;
    case K::intn:
        check(i.imm_size == 1);
        break;
    default:
        break;
    }
    if (!i.port_in_dx && i.kind != K::in && i.kind != K::out) check(i.port == 0);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    CpuMode m = CpuMode(data[0] & 3);
    size_t n = size - 1;
    u8 *buf = new u8[n ? n : 1];
    if (n) memcpy(buf, data + 1, n);

    auto r = x86::decode(buf, n, m);
    if (r.ok()) {
        const Insn &i = r.value();
        check_insn(i, m, n);

        // The result depends only on the instruction's own bytes.
        auto exact = x86::decode(buf, i.len, m);
        check(exact.ok() && exact->len == i.len && exact->kind == i.kind && exact->op_size == i.op_size &&
              exact->disp == i.disp && exact->imm == i.imm && exact->reg == i.reg && exact->base == i.base);
        check(x86::decode(buf, i.len - 1u, m).error() == Err::range);

        u64 gpr[16];
        for (unsigned k = 0; k < 16; k++)
            gpr[k] = 0x0123456789abcdefull * (k + data[0]);
        u64 ea = i.ea(gpr, 0xfffffffffffffff0ull);
        check((ea & ~i.addr_mask()) == 0);
        (void)i.simm();
    } else {
        Err e = r.error();
        check(e == Err::range || e == Err::invalid || e == Err::unsupported);
        // Truncation is only reported for inputs shorter than 15 bytes.
        check(e != Err::range || n < 15);
    }
    delete[] buf;
    return 0;
}
