// x86 instruction decoder for intercepted guest instructions.
//
// Without NRIPS and decode assists (AMD SVM under QEMU TCG) Keel must find
// the length of an intercepted instruction itself, and for a nested page
// fault on an MMIO address it must know what the instruction does. decode()
// serves both: it computes the exact length of any instruction of the
// one-byte, 0F, 0F38 and 0F3A maps (plus 3DNow!, SSE4a) in any mode, and
// fills in the operands of the kinds below; everything else is Kind::other.
//
// The bytes are guest-controlled: decode() never reads at or beyond `avail`
// and never past 15 bytes. Errors:
//   range        the bytes end before the instruction does (fetch more,
//                e.g. the rest of a page-crossing instruction)
//   invalid      undefined opcode (#UD), or longer than 15 bytes (#GP)
//   unsupported  VEX/EVEX/XOP-encoded (C4, C5, 62, 8F with XOP)
//
// Vendor choices (the guest runs on AMD): 66-prefixed near branches in
// 64-bit mode take a rel16 (Intel ignores 66 there); LOCK MOV CR0 is the
// AMD alternate encoding of CR8; SSE4a EXTRQ/INSERTQ immediates are decoded.
#pragma once

#include "kernel/lib/result.hpp"
#include "kernel/lib/types.hpp"

namespace x86 {

// From the guest's CR0.PE, EFLAGS.VM, EFER.LMA, CS.L and CS.D.
enum class CpuMode : u8 { real16, prot16, prot32, long64 };

constexpr CpuMode cpu_mode(bool cr0_pe, bool eflags_vm, bool efer_lma, bool cs_l, bool cs_d)
{
    if (!cr0_pe || eflags_vm) return CpuMode::real16;
    if (efer_lma && cs_l) return CpuMode::long64;
    return cs_d ? CpuMode::prot32 : CpuMode::prot16;
}

// Segment register numbers (the SReg encoding).
enum class Seg : u8 { es, cs, ss, ds, fs, gs };

struct Insn {
    enum class Kind : u8 {
        other,
        // Intercepted instructions.
        in, out, ins, outs,             // op_size 1/2/4; port or port_in_dx
        cpuid, hlt, rdmsr, wrmsr, rdtsc, rdtscp, rdpmc, pause, wbinvd, invd,
        vmcall, vmmcall, vmrun, vmload, vmsave, stgi, clgi, skinit, invlpga,
        invlpg,                         // address: ea()
        mov_to_cr, mov_from_cr,         // reg = CR number, rm = GPR
        mov_to_dr, mov_from_dr,         // reg = DR number, rm = GPR
        clts, lmsw, smsw,               // lmsw/smsw: r/m16 operand (mem or rm)
        xsetbv, xgetbv, monitor, mwait,
        int1, int3, intn, into,         // intn: vector in imm
        iret, pushf, popf,
        // Memory accesses (MMIO emulation): only for a memory operand
        // (mem), the register forms are `other`. reg is the GPR operand.
        mov_load,       // reg <- [ea], mem_size bytes (8A, 8B, A0, A1)
        mov_store,      // [ea] <- reg (88, 89, A2, A3)
        mov_store_imm,  // [ea] <- simm() (C6 /0, C7 /0)
        movzx,          // reg (op_size) <- zero-extended [ea] (mem_size 1/2)
        movsx,          // reg (op_size) <- sign-extended [ea] (0F BE/BF, MOVSXD 63)
        xchg,           // [ea] <-> reg (86, 87)
        // String operations (and ins/outs): no ModRM, mem is false; they use
        // rSI/rDI/rCX of addr_size, mem_size bytes per element.
        movs,           // ES:[rDI] <- seg:[rSI]
        stos,           // ES:[rDI] <- rAX
        lods,           // rAX <- seg:[rSI]
    };

    static constexpr u8 NO_REG = 0xff;

    Kind kind;
    u8   len;           // total length in bytes, 1..15
    u32  opcode;        // 0xXX, 0x0fXX, 0x0f38XX or 0x0f3aXX
    u8   op_size;       // operand size in bytes (1 for byte forms); mov CR/DR: 4 or 8
    u8   mem_size;      // bytes read/written at the memory operand by the memory and
                        // string kinds (lmsw/smsw: 2); 0 for other kinds
    u8   addr_size;     // 2, 4 or 8
    Seg  segment;       // of the memory operand (movs: of the source); default DS/SS, ES for
                        // stos/ins. In 64-bit mode only FS/GS overrides are kept.
    u8   rex;           // effective REX byte, 0 if none (REX counts only right before the opcode)
    bool lock;
    bool rep;           // F2 or F3 present
    bool repne;         // ... and the last of them was F2
    bool opsize_pfx;    // 66 present

    bool has_modrm;
    u8   mod, reg, rm;  // reg with REX.R, rm with REX.B; raw mod
    bool high8;         // byte kinds: reg names AH/CH/DH/BH, i.e. bits 15:8 of GPR reg-4
    bool mem;           // a memory operand (ModRM mod != 3, or moffs): ea() is meaningful
    bool has_sib;
    u8   scale;         // 1, 2, 4, 8 (0 without a memory operand)
    u8   index, base;   // GPR numbers (0 = rAX .. 15 = r15) or NO_REG; 16-bit forms too
    bool rip_relative;
    i64  disp;          // sign-extended displacement; moffs: the (zero-extended) offset
    u8   disp_size;

    bool has_imm;
    u8   imm_size;
    u64  imm;           // zero-extended immediate bytes (two immediates: first in low bytes)

    u16  port;          // in/out with an immediate port (E4-E7)
    bool port_in_dx;

    // Sign-extended immediate.
    i64 simm() const
    {
        if (imm_size == 0 || imm_size >= 8) return i64(imm);
        const unsigned bits = 64 - 8 * imm_size;
        return i64(imm << bits) >> bits;
    }

    // Effective address of the memory operand: the offset within `segment`
    // (the caller adds the segment base), truncated to addr_size. gpr[] is
    // rAX, rCX, rDX, rBX, rSP, rBP, rSI, rDI, r8..r15; rip is the address of
    // this instruction (RIP-relative operands are relative to rip + len).
    u64 ea(const u64 (&gpr)[16], u64 rip) const;

    u64 addr_mask() const { return addr_size == 8 ? ~0ull : (1ull << (addr_size * 8)) - 1; }
};

// Decode the instruction at bytes[0..avail). Fetch up to 15 bytes; fewer
// are fine when the rest is unmapped: Err::range says more were needed.
Result<Insn> decode(const u8 *bytes, usize avail, CpuMode mode);
// The same without the fast path for MMIO MOVs (decode() takes it first): what the unit test
// compares that path against.
Result<Insn> decode_general(const u8 *bytes, usize avail, CpuMode mode);

// The last few instructions decoded at one place that decodes the same instructions again and
// again (a vCPU's MMIO exits: the EOI write, the ICR write). A decoded instruction is a function
// of its bytes and the CPU mode alone, so it is reused exactly when both are the same: the caller
// still fetches the bytes (as the CPU would, through the guest's paging, every time), and lookup()
// compares all `len` of them; the bytes after the instruction, the RIP and the address do not
// matter. Lookups need 15 bytes at `bytes` (two 8-byte loads, at 0 and 7); with fewer, miss.
struct DecodeMemo {
    static constexpr unsigned N = 4;
    struct Entry {
        u64 w0 = 0, w1 = 0;         // bytes 0-7 and 7-14 of the instruction, masked to its length
        u64 mask0 = 0, mask1 = 0;
        u8 mode = 0xff;             // none remembered
        Insn insn{};
    } e[N];
    unsigned next = 0;              // the entry remember() replaces

    [[gnu::always_inline]] const Insn *lookup(const u8 *bytes, usize n, CpuMode m) const
    {
        if (n < 15) return nullptr;
        u64 a, b;
        __builtin_memcpy(&a, bytes, 8);
        __builtin_memcpy(&b, bytes + 7, 8);
        for (const Entry &x : e)
            if (x.mode == u8(m) && (((a ^ x.w0) & x.mask0) | ((b ^ x.w1) & x.mask1)) == 0) return &x.insn;
        return nullptr;
    }
    void remember(const u8 *bytes, usize n, CpuMode m, const Insn &in)
    {
        if (n < 15 || in.len < 1 || in.len > 15) return;
        Entry &x = e[next++ % N];
        __builtin_memcpy(&x.w0, bytes, 8);
        __builtin_memcpy(&x.w1, bytes + 7, 8);
        x.mask0 = in.len >= 8 ? ~0ull : (1ull << (8 * in.len)) - 1;
        x.mask1 = in.len <= 7 ? 0 : in.len >= 15 ? ~0ull : (1ull << (8 * (in.len - 7))) - 1;
        x.w0 &= x.mask0, x.w1 &= x.mask1;
        x.insn = in;
        x.mode = u8(m);
    }
};

} // namespace x86
