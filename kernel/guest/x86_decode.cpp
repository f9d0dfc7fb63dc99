// x86 instruction decoder: prefixes, opcode maps, ModRM/SIB/displacement,
// immediates, and the operands of the instructions Keel intercepts or
// emulates. Every byte is fetched through Bytes, which enforces both the
// caller's length and the architectural 15-byte limit.
#include "kernel/guest/x86_decode.hpp"

namespace x86 {

namespace {

constexpr unsigned MAX_LEN = 15;
constexpr u8 NO = Insn::NO_REG;
enum : u8 { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI };

// Opcode table entry: immediate kind in bits 0-2, flags above.
enum : u8 {
    I_B = 1,        // imm8
    I_W = 2,        // imm16
    I_Z = 3,        // imm16/32 by operand size
    I_V = 4,        // imm16/32/64 by operand size (B8-BF)
    I_O = 5,        // moffs, address size (A0-A3)
    I_E = 6,        // imm16 + imm8 (ENTER)
    I_P = 7,        // far pointer 16:16 / 16:32 (9A, EA)
    M   = 1u << 3,  // ModRM follows
    X   = 1u << 4,  // invalid in 64-bit mode
    D   = 1u << 5,  // operand size defaults to 64 bits in 64-bit mode
    U   = 1u << 6,  // undefined (#UD)
    Y   = 1u << 7,  // byte operand
    B = I_B, W = I_W, Z = I_Z, O = I_O,
};

// clang-format off
constexpr u8 one_byte[256] = {
/* 00 */ M|Y, M, M|Y, M, B|Y, Z, X,   X,   M|Y, M, M|Y, M, B|Y, Z, X, 0,
/* 10 */ M|Y, M, M|Y, M, B|Y, Z, X,   X,   M|Y, M, M|Y, M, B|Y, Z, X, X,
/* 20 */ M|Y, M, M|Y, M, B|Y, Z, 0,   X,   M|Y, M, M|Y, M, B|Y, Z, 0, X,
/* 30 */ M|Y, M, M|Y, M, B|Y, Z, 0,   X,   M|Y, M, M|Y, M, B|Y, Z, 0, X,
/* 40 */ 0,   0, 0,   0, 0,   0, 0,   0,   0,   0, 0,   0, 0,   0, 0, 0,
/* 50 */ D,   D, D,   D, D,   D, D,   D,   D,   D, D,   D, D,   D, D, D,
/* 60 */ X,   X, M|X, M, 0,   0, 0,   0,   Z|D, M|Z, B|D, M|B, Y, 0, Y, 0,
/* 70 */ B|D, B|D, B|D, B|D, B|D, B|D, B|D, B|D, B|D, B|D, B|D, B|D, B|D, B|D, B|D, B|D,
/* 80 */ M|B|Y, M|Z, M|B|Y|X, M|B, M|Y, M, M|Y, M, M|Y, M, M|Y, M, M, M, M, M|D,
/* 90 */ 0,   0, 0,   0, 0,   0, 0,   0,   0,   0, I_P|X, 0, D, D, 0, 0,
/* a0 */ O|Y, O, O|Y, O, Y,   0, Y,   0,   B|Y, Z, Y,   0, Y,   0, Y, 0,
/* b0 */ B|Y, B|Y, B|Y, B|Y, B|Y, B|Y, B|Y, B|Y, I_V, I_V, I_V, I_V, I_V, I_V, I_V, I_V,
/* c0 */ M|B|Y, M|B, W|D, D, M, M, M|B|Y, M|Z, I_E|D, D, W, 0, 0, B, X, 0,
/* d0 */ M|Y, M, M|Y, M, B|X, B|X, X, Y, M, M, M, M, M, M, M, M,
/* e0 */ B|D, B|D, B|D, B|D, B|Y, B, B|Y, B, Z|D, Z|D, I_P|X, B|D, Y, 0, Y, 0,
/* f0 */ 0,   0, 0,   0, 0,   0, M|Y, M, 0,   0, 0,   0, 0,   0, M|Y, M,
};

constexpr u8 two_byte[256] = {
/* 00 */ M,   M, M,   M, U,   0, 0,   0,   0,   0, U,   0, U,   M, 0, M|B,
/* 10 */ M,   M, M,   M, M,   M, M,   M,   M,   M, M,   M, M,   M, M, M,
/* 20 */ M,   M, M,   M, U,   U, U,   U,   M,   M, M,   M, M,   M, M, M,
/* 30 */ 0,   0, 0,   0, 0,   0, U,   0,   0,   U, 0,   U, U,   U, U, U,
/* 40 */ M,   M, M,   M, M,   M, M,   M,   M,   M, M,   M, M,   M, M, M,
/* 50 */ M,   M, M,   M, M,   M, M,   M,   M,   M, M,   M, M,   M, M, M,
/* 60 */ M,   M, M,   M, M,   M, M,   M,   M,   M, M,   M, M,   M, M, M,
/* 70 */ M|B, M|B, M|B, M|B, M, M, M, 0,   M,   M, U,   U, M,   M, M, M,
/* 80 */ Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D, Z|D,
/* 90 */ M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y, M|Y,
/* a0 */ D,   D, 0,   M, M|B, M, U,   U,   D,   D, 0,   M, M|B, M, M, M,
/* b0 */ M|Y, M, M,   M, M,   M, M,   M,   M,   M, M|B, M, M,   M, M, M,
/* c0 */ M|Y, M, M|B, M, M|B, M|B, M|B, M, 0,   0, 0,   0, 0,   0, 0, 0,
/* d0 */ M,   M, M,   M, M,   M, M,   M,   M,   M, M,   M, M,   M, M, M,
/* e0 */ M,   M, M,   M, M,   M, M,   M,   M,   M, M,   M, M,   M, M, M,
/* f0 */ M,   M, M,   M, M,   M, M,   M,   M,   M, M,   M, M,   M, M, M,
};
// clang-format on

// The instruction bytes: never beyond `avail`, never beyond 15.
struct Bytes {
    const u8 *p;
    usize avail;
    unsigned pos;

    Err take(unsigned n, u64 &v)
    {
        v = 0;
        for (unsigned i = 0; i < n; i++) {
            if (pos >= MAX_LEN) return Err::invalid;
            if (pos >= avail) return Err::range;
            v |= u64(p[pos++]) << (8 * i);
        }
        return Err::none;
    }

    Err byte(u8 &b)
    {
        u64 v;
        Err e = take(1, v);
        b = u8(v);
        return e;
    }

    // The next byte without consuming it.
    Err peek(u8 &b)
    {
        Err e = byte(b);
        if (e == Err::none) pos--;
        return e;
    }
};

i64 sext(u64 v, unsigned bytes)
{
    if (bytes == 0 || bytes >= 8) return i64(v);
    unsigned sh = 64 - 8 * bytes;
    return i64(v << sh) >> sh;
}

#define TRY(expr) do { Err e_ = (expr); if (e_ != Err::none) return e_; } while (0)

// ModRM memory operand: SIB, displacement, default segment.
Err memory_operand(Bytes &c, Insn &in, u8 modrm, bool l64, Seg &seg)
{
    static constexpr u8 base16[8] = {RBX, RBX, RBP, RBP, NO, NO, RBP, RBX};
    static constexpr u8 index16[8] = {RSI, RDI, RSI, RDI, RSI, RDI, NO, NO};

    unsigned rm = modrm & 7, dsz = in.mod == 1 ? 1 : 0;
    in.mem = true;
    in.scale = 1;
    in.index = NO;

    if (in.addr_size == 2) {
        in.base = base16[rm];
        in.index = index16[rm];
        if (in.mod == 0 && rm == 6) { in.base = NO; dsz = 2; }
        if (in.mod == 2) dsz = 2;
        seg = in.base == RBP ? Seg::ss : Seg::ds;
    } else {
        if (in.mod == 2) dsz = 4;
        if (rm == 4) {
            u8 sib;
            TRY(c.byte(sib));
            in.has_sib = true;
            in.scale = u8(1u << (sib >> 6));
            in.index = u8((sib >> 3 & 7) | (in.rex & 2) << 2);
            if (in.index == RSP) in.index = NO;
            in.base = u8((sib & 7) | (in.rex & 1) << 3);
            if ((sib & 7) == 5 && in.mod == 0) { in.base = NO; dsz = 4; }
        } else if (rm == 5 && in.mod == 0) {
            in.base = NO;
            in.rip_relative = l64;
            dsz = 4;
        } else
            in.base = in.rm;
        seg = in.base == RSP || in.base == RBP ? Seg::ss : Seg::ds;
    }

    u64 d;
    TRY(c.take(dsz, d));
    in.disp = sext(d, dsz);
    in.disp_size = u8(dsz);
    return Err::none;
}

bool is_mov_cr_dr(u32 op) { return op >= 0x0f20 && op <= 0x0f23; }

// The semantic part: kinds and their operands. `y` marks a byte form.
void classify(Insn &in, bool l64, bool y, bool pf3)
{
    using K = Insn::Kind;
    u8 io_size = y ? 1 : in.op_size == 2 ? 2 : 4;
    auto set = [&](K k, u8 msz = 0) { in.kind = k; in.mem_size = msz; };
    auto if_mem = [&](K k, u8 msz) { if (in.mem) set(k, msz); };

    switch (in.opcode) {
    case 0xe4: case 0xe5: case 0xe6: case 0xe7:
        in.port = u16(in.imm);
        in.op_size = io_size;
        set(in.opcode & 2 ? K::out : K::in);
        break;
    case 0xec: case 0xed: case 0xee: case 0xef:
        in.port_in_dx = true;
        in.op_size = io_size;
        set(in.opcode & 2 ? K::out : K::in);
        break;
    case 0x6c: case 0x6d:
        in.port_in_dx = true;
        in.op_size = io_size;
        in.segment = Seg::es;
        set(K::ins, io_size);
        break;
    case 0x6e: case 0x6f:
        in.port_in_dx = true;
        in.op_size = io_size;
        set(K::outs, io_size);
        break;
    case 0xa4: case 0xa5: set(K::movs, in.op_size); break;
    case 0xaa: case 0xab: in.segment = Seg::es; set(K::stos, in.op_size); break;
    case 0xac: case 0xad: set(K::lods, in.op_size); break;
    case 0x88: case 0x89: case 0xa2: case 0xa3: if_mem(K::mov_store, in.op_size); break;
    case 0x8a: case 0x8b: case 0xa0: case 0xa1: if_mem(K::mov_load, in.op_size); break;
    case 0x86: case 0x87: if_mem(K::xchg, in.op_size); break;
    case 0xc6: case 0xc7: if ((in.reg & 7) == 0) if_mem(K::mov_store_imm, in.op_size); break;
    case 0x63: if (l64) if_mem(K::movsx, min<u8>(in.op_size, 4)); break;
    case 0x0fb6: case 0x0fb7: if_mem(K::movzx, in.opcode & 1 ? 2 : 1); break;
    case 0x0fbe: case 0x0fbf: if_mem(K::movsx, in.opcode & 1 ? 2 : 1); break;
    case 0x90: if (pf3 && !(in.rex & 1)) set(K::pause); break;
    case 0xcc: set(K::int3); break;
    case 0xcd: set(K::intn); break;
    case 0xce: set(K::into); break;
    case 0xf1: set(K::int1); break;
    case 0xf4: set(K::hlt); break;
    case 0xcf: set(K::iret); break;
    case 0x9c: set(K::pushf); break;
    case 0x9d: set(K::popf); break;
    case 0x0f06: set(K::clts); break;
    case 0x0f08: set(K::invd); break;
    case 0x0f09: set(K::wbinvd); break;
    case 0x0f30: set(K::wrmsr); break;
    case 0x0f31: set(K::rdtsc); break;
    case 0x0f32: set(K::rdmsr); break;
    case 0x0f33: set(K::rdpmc); break;
    case 0x0fa2: set(K::cpuid); break;
    case 0x0f20: case 0x0f21: case 0x0f22: case 0x0f23:
        // The r/m operand is always a GPR (mod is ignored); AMD's
        // alternate encoding LOCK MOV CR0 means CR8.
        in.op_size = l64 ? 8 : 4;
        if (in.opcode == 0x0f20 || in.opcode == 0x0f22)
            if (in.lock && in.reg == 0) in.reg = 8;
        set(in.opcode == 0x0f20 ? K::mov_from_cr : in.opcode == 0x0f22 ? K::mov_to_cr
          : in.opcode == 0x0f21 ? K::mov_from_dr : K::mov_to_dr);
        break;
    case 0x0f01: {
        unsigned r = in.reg & 7;
        if (in.mem) {
            if (r == 7) set(K::invlpg);
            if (r == 4) set(K::smsw, 2);
            if (r == 6) set(K::lmsw, 2);
            break;
        }
        if (r == 4) set(K::smsw);
        if (r == 6) set(K::lmsw);
        switch (0xc0 | (in.reg & 7) << 3 | (in.rm & 7)) {
        case 0xc1: set(K::vmcall); break;
        case 0xc8: set(K::monitor); break;
        case 0xc9: set(K::mwait); break;
        case 0xd0: set(K::xgetbv); break;
        case 0xd1: set(K::xsetbv); break;
        case 0xd8: set(K::vmrun); break;
        case 0xd9: set(K::vmmcall); break;
        case 0xda: set(K::vmload); break;
        case 0xdb: set(K::vmsave); break;
        case 0xdc: set(K::stgi); break;
        case 0xdd: set(K::clgi); break;
        case 0xde: set(K::skinit); break;
        case 0xdf: set(K::invlpga); break;
        case 0xf9: set(K::rdtscp); break;
        }
        break;
    }
    }

    // A byte register operand without REX: 4-7 are AH, CH, DH, BH.
    if (y && in.has_modrm && !in.rex && in.reg >= 4 && in.reg < 8 && in.kind != K::other)
        in.high8 = true;
}

} // namespace


u64 Insn::ea(const u64 (&gpr)[16], u64 rip) const
{
    u64 a = u64(disp);
    if (base != NO_REG) a += gpr[base & 15];
    if (index != NO_REG) a += gpr[index & 15] * scale;
    if (rip_relative) a += rip + len;
    return a & addr_mask();
}

namespace {

// The MMIO accesses that make most exits (a driver's MOV to or from a device register): MOV
// r/m, r (88, 89), MOV r, r/m (8A, 8B) and MOV r/m, imm (C6 /0, C7 /0) with a memory operand,
// at most a REX prefix, in 32- or 64-bit code. Decoded without the prefix loop, the opcode
// tables or classify(); the result is field for field what the general path gives (the unit
// test compares them over every ModRM/SIB/REX). False: not such an instruction, or out of
// bytes: the general path decides.
bool decode_mov_fast(const u8 *bytes, usize avail, CpuMode mode, Insn &in)
{
    const bool l64 = mode == CpuMode::long64;
    if (!bytes || avail < 2 || (!l64 && mode != CpuMode::prot32)) return false;
    unsigned pos = 0;
    u8 rex = 0;
    if (l64 && (bytes[0] & 0xf0) == 0x40) rex = bytes[pos++];
    const u8 op = bytes[pos];
    const bool store_imm = op == 0xc6 || op == 0xc7;
    if (!((op >= 0x88 && op <= 0x8b) || store_imm) || pos + 1 >= avail) return false;
    const u8 modrm = bytes[pos + 1];
    if (modrm >> 6 == 3 || (store_imm && (modrm & 0x38))) return false;
    in = Insn{};
    in.index = Insn::NO_REG;
    in.rex = rex;
    in.opcode = op;
    in.addr_size = l64 ? 8 : 4;
    const bool y = !(op & 1);
    in.op_size = y ? 1 : rex & 8 ? 8 : 4;
    in.has_modrm = true;
    in.mod = modrm >> 6;
    in.reg = u8((modrm >> 3 & 7) | (rex & 4) << 1);
    in.rm = u8((modrm & 7) | (rex & 1) << 3);
    Bytes c{bytes, avail, pos + 2};
    Seg seg = Seg::ds;
    if (memory_operand(c, in, modrm, l64, seg) != Err::none) return false;
    if (store_imm) {
        const unsigned isz = y ? 1 : 4;
        if (c.take(isz, in.imm) != Err::none) return false;
        in.has_imm = true;
        in.imm_size = u8(isz);
        in.kind = Insn::Kind::mov_store_imm;
    } else {
        in.kind = op & 2 ? Insn::Kind::mov_load : Insn::Kind::mov_store;
        in.high8 = y && !rex && in.reg >= 4 && in.reg < 8;
    }
    in.mem_size = in.op_size;
    in.len = u8(c.pos);
    in.segment = seg;
    return true;
}

} // namespace

Result<Insn> decode(const u8 *bytes, usize avail, CpuMode mode)
{
    Insn fast;
    if (decode_mov_fast(bytes, avail, mode, fast)) return fast;
    return decode_general(bytes, avail, mode);
}

Result<Insn> decode_general(const u8 *bytes, usize avail, CpuMode mode)
{
    Bytes c{bytes, bytes ? avail : 0, 0};
    Insn in{};
    in.base = in.index = Insn::NO_REG;
    bool l64 = mode == CpuMode::long64;
    bool d16 = mode == CpuMode::real16 || mode == CpuMode::prot16;
    bool p66 = false, p67 = false, pf2 = false, pf3 = false;
    Seg seg_override = Seg::ds;
    bool has_override = false;
    u8 b;

    // Legacy prefixes in any order, the last of a group wins; a REX prefix
    // counts only immediately before the opcode. Bounded by MAX_LEN.
    for (;;) {
        TRY(c.byte(b));
        if (l64 && (b & 0xf0) == 0x40) { in.rex = b; continue; }
        if (b == 0x66) p66 = true;
        else if (b == 0x67) p67 = true;
        else if (b == 0xf0) in.lock = true;
        else if (b == 0xf2) pf2 = in.rep = in.repne = true;
        else if (b == 0xf3) { pf3 = in.rep = true; in.repne = false; }
        else if (b == 0x64 || b == 0x65) { seg_override = b == 0x64 ? Seg::fs : Seg::gs; has_override = true; }
        else if ((b & 0xe7) == 0x26) {      // ES, CS, SS, DS: ignored in 64-bit mode
            if (!l64) { seg_override = Seg(b >> 3 & 3); has_override = true; }
        } else
            break;
        in.rex = 0;
    }

    in.opsize_pfx = p66;
    in.addr_size = l64 ? (p67 ? 4 : 8) : (d16 != p67 ? 2 : 4);
    u8 osz = d16 != p66 ? 2 : 4;
    if (in.rex & 8) osz = 8;

    // VEX (C4, C5), EVEX (62), XOP (8F): in legacy modes C4/C5/62 with a
    // register ModRM, since the memory forms are LES/LDS/BOUND.
    if (b == 0xc4 || b == 0xc5 || b == 0x62 || b == 0x8f) {
        u8 nx;
        TRY(c.peek(nx));
        if (b == 0x8f ? (nx & 0x38) != 0 : l64 || (nx & 0xc0) == 0xc0)
            return Err::unsupported;
    }

    u8 fl;
    in.opcode = b;
    if (b == 0x0f) {
        TRY(c.byte(b));
        in.opcode = 0x0f00 | b;
        fl = two_byte[b];
        if (b == 0x38 || b == 0x3a) {
            TRY(c.byte(b));
            in.opcode = (in.opcode << 8) | b;
            fl = in.opcode >> 8 == 0x0f38 ? M : M | B;
        }
    } else
        fl = one_byte[b];

    if (fl & U || (l64 && fl & X)) return Err::invalid;
    if (l64 && fl & D) osz = in.rex & 8 ? 8 : p66 ? 2 : 8;
    in.op_size = fl & Y ? 1 : osz;

    Seg seg = Seg::ds;
    if (fl & M) {
        u8 modrm;
        TRY(c.byte(modrm));
        in.has_modrm = true;
        in.mod = modrm >> 6;
        in.reg = u8((modrm >> 3 & 7) | (in.rex & 4) << 1);
        in.rm = u8((modrm & 7) | (in.rex & 1) << 3);
        if (in.mod != 3 && !is_mov_cr_dr(in.opcode))
            TRY(memory_operand(c, in, modrm, l64, seg));
        if (l64 && in.opcode == 0xff && ((in.reg & 7) == 2 || (in.reg & 7) == 4 || (in.reg & 7) == 6))
            in.op_size = p66 && !(in.rex & 8) ? 2 : 8;
    }

    unsigned isz = 0;
    switch (fl & 7) {
    case I_B: isz = 1; break;
    case I_W: isz = 2; break;
    case I_Z: isz = osz == 2 ? 2 : 4; break;
    case I_V: isz = osz; break;
    case I_E: isz = 3; break;
    case I_P: isz = osz == 2 ? 4 : 6; break;
    case I_O: {
        u64 off;
        TRY(c.take(in.addr_size, off));
        in.mem = true;
        in.disp = i64(off);
        in.disp_size = in.addr_size;
        in.base = in.index = Insn::NO_REG;
        in.scale = 1;
        break;
    }
    }
    if ((in.opcode == 0xf6 || in.opcode == 0xf7) && (in.reg & 7) < 2)
        isz = in.opcode == 0xf6 ? 1 : osz == 2 ? 2 : 4;
    if (in.opcode == 0x0f78 && (p66 || pf2))
        isz = 2;                                // SSE4a EXTRQ/INSERTQ imm8, imm8
    if (isz) {
        TRY(c.take(isz, in.imm));
        in.has_imm = true;
        in.imm_size = u8(isz);
    }

    in.len = u8(c.pos);
    in.segment = has_override ? seg_override : seg;
    classify(in, l64, fl & Y, pf3);
    return in;
}

#undef TRY

} // namespace x86
