// The x86 instruction decoder: golden vectors per kind and mode, prefix and
// addressing corner cases, the 15-byte limit, truncation at every length
// (exact-size heap copies, so ASan catches any overread), and a length table
// assembled with GNU as and cross-checked with objdump.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/guest/x86_decode.hpp"

namespace {

using x86::CpuMode;
using x86::decode;
using x86::Insn;
using x86::Seg;
using K = Insn::Kind;

constexpr CpuMode R16 = CpuMode::real16, P16 = CpuMode::prot16, P32 = CpuMode::prot32,
                  L64 = CpuMode::long64;
constexpr CpuMode ALL_MODES[] = {R16, P16, P32, L64};
constexpr u8 NO = Insn::NO_REG;

std::vector<u8> hex(const std::string &s)
{
    std::vector<u8> v;
    for (usize i = 0; i + 1 < s.size(); i += 2)
        v.push_back(u8(std::stoul(s.substr(i, 2), nullptr, 16)));
    return v;
}

// Decode an exact-size heap copy of the first n bytes.
Result<Insn> dec_n(const std::vector<u8> &b, usize n, CpuMode m)
{
    auto p = std::make_unique<u8[]>(n ? n : 1);
    if (n) memcpy(p.get(), b.data(), n);
    return decode(p.get(), n, m);
}

Result<Insn> dec(const std::string &h, CpuMode m)
{
    auto b = hex(h);
    return dec_n(b, b.size(), m);
}

// Decode h, which must succeed with length `len`; every shorter prefix of
// it must report Err::range, and trailing bytes must not change the length.
Insn ok(const std::string &h, CpuMode m, unsigned len)
{
    auto b = hex(h);
    auto r = dec_n(b, b.size(), m);
    EXPECT_TRUE(r.ok()) << h << " mode " << int(m) << ": " << err_name(r.error());
    if (!r.ok()) return Insn{};
    EXPECT_EQ(r->len, len) << h << " mode " << int(m);
    for (usize n = 0; n < b.size() && n < r->len; n++)
        EXPECT_EQ(dec_n(b, n, m).error(), Err::range) << h << " truncated to " << n;
    auto more = b;
    for (int i = 0; i < 16; i++) more.push_back(0x90);
    auto r2 = dec_n(more, more.size(), m);
    EXPECT_TRUE(r2.ok() && r2->len == r->len) << h << " with trailing bytes";
    return r.value();
}

Err fails(const std::string &h, CpuMode m)
{
    auto r = dec(h, m);
    EXPECT_FALSE(r.ok()) << h << " mode " << int(m) << " decoded, len " << int(r->len);
    return r.error();
}

std::string rep(const char *byte, int n)
{
    std::string s;
    for (int i = 0; i < n; i++) s += byte;
    return s;
}

TEST(X86Decode, CpuMode)
{
    EXPECT_EQ(x86::cpu_mode(false, false, false, false, false), R16);
    EXPECT_EQ(x86::cpu_mode(false, false, false, false, true), R16);
    EXPECT_EQ(x86::cpu_mode(true, true, false, false, true), R16);      // virtual-8086
    EXPECT_EQ(x86::cpu_mode(true, false, false, false, false), P16);
    EXPECT_EQ(x86::cpu_mode(true, false, false, false, true), P32);
    EXPECT_EQ(x86::cpu_mode(true, false, true, false, true), P32);      // compatibility mode
    EXPECT_EQ(x86::cpu_mode(true, false, true, false, false), P16);
    EXPECT_EQ(x86::cpu_mode(true, false, true, true, false), L64);
}

TEST(X86Decode, PortIo)
{
    for (CpuMode m : ALL_MODES) {
        bool d16 = m == R16 || m == P16;
        Insn i = ok("ec", m, 1);                                // in al, dx
        EXPECT_EQ(i.kind, K::in);
        EXPECT_EQ(i.op_size, 1);
        EXPECT_TRUE(i.port_in_dx);
        EXPECT_FALSE(i.has_imm);
        EXPECT_EQ(i.opcode, 0xecu);

        i = ok("66ed", m, 2);                                   // in ax/eax, dx
        EXPECT_EQ(i.kind, K::in);
        EXPECT_EQ(i.op_size, d16 ? 4 : 2);
        i = ok("ed", m, 1);
        EXPECT_EQ(i.op_size, d16 ? 2 : 4);

        i = ok("e680", m, 2);                                   // out 0x80, al
        EXPECT_EQ(i.kind, K::out);
        EXPECT_EQ(i.op_size, 1);
        EXPECT_EQ(i.port, 0x80);
        EXPECT_FALSE(i.port_in_dx);

        i = ok("e571", m, 2);                                   // in eax, 0x71
        EXPECT_EQ(i.kind, K::in);
        EXPECT_EQ(i.port, 0x71);
        EXPECT_EQ(i.op_size, d16 ? 2 : 4);

        i = ok("ef", m, 1);                                     // out dx, eax
        EXPECT_EQ(i.kind, K::out);
        EXPECT_TRUE(i.port_in_dx);
        i = ok("ee", m, 1);
        EXPECT_EQ(i.kind, K::out);
        EXPECT_EQ(i.op_size, 1);
    }
    Insn i = ok("48ed", L64, 2);                                // REX.W: still 32-bit
    EXPECT_EQ(i.op_size, 4);
    EXPECT_EQ(i.rex, 0x48);
    EXPECT_EQ(ok("48ed", P32, 1).kind, K::other);               // dec eax
}

TEST(X86Decode, StringIo)
{
    for (CpuMode m : ALL_MODES) {
        Insn i = ok("f36c", m, 2);                              // rep insb
        EXPECT_EQ(i.kind, K::ins);
        EXPECT_TRUE(i.rep);
        EXPECT_FALSE(i.repne);
        EXPECT_EQ(i.op_size, 1);
        EXPECT_EQ(i.mem_size, 1);
        EXPECT_EQ(i.segment, Seg::es);
        EXPECT_TRUE(i.port_in_dx);
        EXPECT_FALSE(i.mem);
        EXPECT_EQ(i.addr_size, m == L64 ? 8 : m == P32 ? 4 : 2);

        i = ok("6e", m, 1);                                     // outsb
        EXPECT_EQ(i.kind, K::outs);
        EXPECT_FALSE(i.rep);
        EXPECT_EQ(i.segment, Seg::ds);

        i = ok("64f36f", m, 3);                                 // rep outs fs:
        EXPECT_EQ(i.kind, K::outs);
        EXPECT_EQ(i.segment, Seg::fs);
        EXPECT_EQ(i.op_size, m == L64 || m == P32 ? 4 : 2);

        i = ok("6766f36d", m, 4);
        EXPECT_EQ(i.kind, K::ins);
        EXPECT_EQ(i.addr_size, m == L64 ? 4 : m == P32 ? 2 : 4);
        EXPECT_EQ(i.op_size, m == L64 || m == P32 ? 2 : 4);
    }
    EXPECT_EQ(ok("2e6e", P32, 2).segment, Seg::cs);
    EXPECT_EQ(ok("2e6e", L64, 2).segment, Seg::ds);             // ignored in 64-bit mode
    EXPECT_EQ(ok("486f", L64, 2).op_size, 4);
}

TEST(X86Decode, StringMoves)
{
    Insn i = ok("f3a4", L64, 2);                                // rep movsb
    EXPECT_EQ(i.kind, K::movs);
    EXPECT_EQ(i.mem_size, 1);
    EXPECT_TRUE(i.rep);
    EXPECT_EQ(i.segment, Seg::ds);
    i = ok("f348a5", L64, 3);                                   // rep movsq
    EXPECT_EQ(i.kind, K::movs);
    EXPECT_EQ(i.mem_size, 8);
    i = ok("65a5", P32, 2);
    EXPECT_EQ(i.segment, Seg::gs);
    EXPECT_EQ(i.mem_size, 4);
    i = ok("f3ab", L64, 2);                                     // rep stosd
    EXPECT_EQ(i.kind, K::stos);
    EXPECT_EQ(i.mem_size, 4);
    EXPECT_EQ(i.segment, Seg::es);
    i = ok("64aa", P32, 2);                                     // stos: ES cannot be overridden
    EXPECT_EQ(i.segment, Seg::es);
    i = ok("66ad", R16, 2);
    EXPECT_EQ(i.kind, K::lods);
    EXPECT_EQ(i.mem_size, 4);
    i = ok("f2a4", P32, 2);
    EXPECT_TRUE(i.rep);
    EXPECT_TRUE(i.repne);
    i = ok("f2f3a4", P32, 3);                                   // the last of F2/F3 wins
    EXPECT_TRUE(i.rep);
    EXPECT_FALSE(i.repne);
    EXPECT_EQ(ok("a6", P32, 1).kind, K::other);                 // cmps
}

struct Simple {
    const char *hex;
    unsigned len;
    K kind;
};

TEST(X86Decode, InterceptedInstructions)
{
    static const Simple v[] = {
        {"0fa2", 2, K::cpuid},      {"f4", 1, K::hlt},         {"0f32", 2, K::rdmsr},
        {"0f30", 2, K::wrmsr},      {"0f31", 2, K::rdtsc},     {"0f01f9", 3, K::rdtscp},
        {"0f33", 2, K::rdpmc},      {"0f01c1", 3, K::vmcall},  {"0f01d9", 3, K::vmmcall},
        {"0f01d8", 3, K::vmrun},    {"0f01da", 3, K::vmload},  {"0f01db", 3, K::vmsave},
        {"0f01dc", 3, K::stgi},     {"0f01dd", 3, K::clgi},    {"0f01de", 3, K::skinit},
        {"0f01df", 3, K::invlpga},  {"0f01d1", 3, K::xsetbv},  {"0f01d0", 3, K::xgetbv},
        {"0f01c8", 3, K::monitor},  {"0f01c9", 3, K::mwait},   {"f390", 2, K::pause},
        {"0f09", 2, K::wbinvd},     {"0f08", 2, K::invd},      {"cc", 1, K::int3},
        {"cd80", 2, K::intn},       {"f1", 1, K::int1},        {"cf", 1, K::iret},
        {"9c", 1, K::pushf},        {"9d", 1, K::popf},        {"0f06", 2, K::clts},
        {"0f01f0", 3, K::lmsw},     {"0f01e0", 3, K::smsw},    {"90", 1, K::other},
        {"0f01c2", 3, K::other},    {"0f01f8", 3, K::other},   {"f2f390", 3, K::pause},
    };
    for (CpuMode m : ALL_MODES)
        for (const Simple &s : v) {
            Insn i = ok(s.hex, m, s.len);
            EXPECT_EQ(i.kind, s.kind) << s.hex << " mode " << int(m);
        }
    EXPECT_EQ(ok("0fa2", L64, 2).opcode, 0x0fa2u);
    Insn i = ok("cd80", L64, 2);
    EXPECT_EQ(i.imm, 0x80u);
    EXPECT_EQ(i.imm_size, 1);
    EXPECT_EQ(ok("ce", P32, 1).kind, K::into);
    EXPECT_EQ(fails("ce", L64), Err::invalid);
    EXPECT_EQ(ok("48cf", L64, 2).op_size, 8);                   // iretq
    EXPECT_EQ(ok("cf", L64, 1).op_size, 4);
    EXPECT_EQ(ok("9c", L64, 1).op_size, 8);                     // pushfq
    EXPECT_EQ(ok("669c", L64, 2).op_size, 2);
    EXPECT_EQ(ok("9c", P32, 1).op_size, 4);
    EXPECT_EQ(ok("4190", L64, 2).kind, K::other);               // xchg r8d, eax
    EXPECT_EQ(ok("f34190", L64, 3).kind, K::other);
    EXPECT_EQ(ok("41f390", L64, 3).kind, K::pause);             // REX not before the opcode
    EXPECT_EQ(ok("410f01d9", L64, 4).kind, K::vmmcall);
    EXPECT_EQ(ok("0f01f9", L64, 3).opcode, 0x0f01u);
}

TEST(X86Decode, Invlpg)
{
    Insn i = ok("0f0138", L64, 3);                              // invlpg [rax]
    EXPECT_EQ(i.kind, K::invlpg);
    EXPECT_TRUE(i.mem);
    EXPECT_EQ(i.base, 0);
    u64 gpr[16] = {0x1234'5678'9000};
    EXPECT_EQ(i.ea(gpr, 0), 0x1234'5678'9000u);

    i = ok("0f013d00100000", L64, 7);                           // invlpg [rip+0x1000]
    EXPECT_EQ(i.kind, K::invlpg);
    EXPECT_TRUE(i.rip_relative);
    EXPECT_EQ(i.ea(gpr, 0xffff'8000'0000'0000), 0xffff'8000'0000'1007u);

    i = ok("410f013c24", L64, 5);                               // invlpg [r12]
    EXPECT_EQ(i.base, 12);
    EXPECT_TRUE(i.has_sib);

    i = ok("0f013f", R16, 3);                                   // invlpg [bx]
    EXPECT_EQ(i.base, 3);
    i = ok("0f013e3412", R16, 5);                               // invlpg [0x1234]
    EXPECT_EQ(i.base, NO);
    EXPECT_EQ(i.disp, 0x1234);
    EXPECT_EQ(ok("0f01f8", L64, 3).kind, K::other);             // swapgs: same /7, register form
}

TEST(X86Decode, ControlRegisters)
{
    Insn i = ok("0f20d8", L64, 3);                              // mov rax, cr3
    EXPECT_EQ(i.kind, K::mov_from_cr);
    EXPECT_EQ(i.reg, 3);
    EXPECT_EQ(i.rm, 0);
    EXPECT_EQ(i.op_size, 8);
    EXPECT_FALSE(i.mem);
    i = ok("0f22d8", P32, 3);                                   // mov cr3, eax
    EXPECT_EQ(i.kind, K::mov_to_cr);
    EXPECT_EQ(i.op_size, 4);
    i = ok("440f20c0", L64, 4);                                 // mov rax, cr8
    EXPECT_EQ(i.reg, 8);
    i = ok("410f22df", L64, 4);                                 // mov cr3, r15
    EXPECT_EQ(i.reg, 3);
    EXPECT_EQ(i.rm, 15);
    i = ok("f00f20c0", P32, 4);                                 // AMD: lock mov eax, cr0 = cr8
    EXPECT_EQ(i.kind, K::mov_from_cr);
    EXPECT_EQ(i.reg, 8);
    EXPECT_TRUE(i.lock);
    i = ok("0f2000", L64, 3);                                   // mod is ignored: no displacement
    EXPECT_EQ(i.kind, K::mov_from_cr);
    EXPECT_FALSE(i.mem);
    EXPECT_EQ(ok("0f2280", R16, 3).kind, K::mov_to_cr);
    EXPECT_EQ(ok("0f2205", L64, 3).disp_size, 0);
    i = ok("0f21f8", L64, 3);                                   // mov rax, dr7
    EXPECT_EQ(i.kind, K::mov_from_dr);
    EXPECT_EQ(i.reg, 7);
    EXPECT_EQ(ok("0f23c0", L64, 3).kind, K::mov_to_dr);
    EXPECT_EQ(fails("0f24c0", P32), Err::invalid);              // 386 test registers

    i = ok("0f01f3", L64, 3);                                   // lmsw bx
    EXPECT_EQ(i.kind, K::lmsw);
    EXPECT_FALSE(i.mem);
    EXPECT_EQ(i.rm, 3);
    i = ok("0f0133", L64, 3);                                   // lmsw [rbx]
    EXPECT_EQ(i.kind, K::lmsw);
    EXPECT_TRUE(i.mem);
    EXPECT_EQ(i.mem_size, 2);
    EXPECT_EQ(ok("0f0123", L64, 3).kind, K::smsw);
}

TEST(X86Decode, MovLong)
{
    Insn i = ok("8908", L64, 2);                                // mov [rax], ecx
    EXPECT_EQ(i.kind, K::mov_store);
    EXPECT_EQ(i.reg, 1);
    EXPECT_EQ(i.base, 0);
    EXPECT_EQ(i.index, NO);
    EXPECT_EQ(i.op_size, 4);
    EXPECT_EQ(i.mem_size, 4);
    EXPECT_EQ(i.addr_size, 8);
    EXPECT_TRUE(i.mem);
    EXPECT_FALSE(i.has_sib);
    EXPECT_EQ(i.segment, Seg::ds);

    i = ok("488b0510000000", L64, 7);                           // mov rax, [rip+0x10]
    EXPECT_EQ(i.kind, K::mov_load);
    EXPECT_TRUE(i.rip_relative);
    EXPECT_EQ(i.base, NO);
    EXPECT_EQ(i.disp, 0x10);
    EXPECT_EQ(i.disp_size, 4);
    EXPECT_EQ(i.mem_size, 8);
    EXPECT_EQ(i.rex, 0x48);
    u64 gpr[16] = {};
    EXPECT_EQ(i.ea(gpr, 0x1000), 0x1017u);

    i = ok("8b05f0ffffff", L64, 6);                             // mov eax, [rip-0x10]
    EXPECT_EQ(i.disp, -0x10);
    EXPECT_EQ(i.ea(gpr, 0x1000), 0x0ff6u);

    i = ok("c70078563412", L64, 6);                             // mov dword [rax], 0x12345678
    EXPECT_EQ(i.kind, K::mov_store_imm);
    EXPECT_EQ(i.imm, 0x12345678u);
    EXPECT_EQ(i.imm_size, 4);
    EXPECT_EQ(i.mem_size, 4);
    i = ok("66c7003412", L64, 5);                               // mov word [rax], 0x1234
    EXPECT_EQ(i.kind, K::mov_store_imm);
    EXPECT_EQ(i.imm, 0x1234u);
    EXPECT_EQ(i.mem_size, 2);
    i = ok("48c700ffffffff", L64, 7);                           // mov qword [rax], -1
    EXPECT_EQ(i.mem_size, 8);
    EXPECT_EQ(i.imm, 0xffffffffu);
    EXPECT_EQ(i.simm(), -1);
    i = ok("c60012", L64, 3);
    EXPECT_EQ(i.kind, K::mov_store_imm);
    EXPECT_EQ(i.mem_size, 1);
    EXPECT_EQ(ok("c7c078563412", L64, 6).kind, K::other);       // mov eax, imm32
    EXPECT_EQ(ok("c7f800000000", L64, 6).kind, K::other);       // xbegin

    i = ok("0fb600", L64, 3);                                   // movzx eax, byte [rax]
    EXPECT_EQ(i.kind, K::movzx);
    EXPECT_EQ(i.mem_size, 1);
    EXPECT_EQ(i.op_size, 4);
    i = ok("480fb708", L64, 4);                                 // movzx rcx, word [rax]
    EXPECT_EQ(i.kind, K::movzx);
    EXPECT_EQ(i.mem_size, 2);
    EXPECT_EQ(i.op_size, 8);
    EXPECT_EQ(i.reg, 1);
    EXPECT_EQ(i.opcode, 0x0fb7u);
    i = ok("660fbe00", L64, 4);                                 // movsx ax, byte [rax]
    EXPECT_EQ(i.kind, K::movsx);
    EXPECT_EQ(i.mem_size, 1);
    EXPECT_EQ(i.op_size, 2);
    i = ok("486300", L64, 3);                                   // movsxd rax, dword [rax]
    EXPECT_EQ(i.kind, K::movsx);
    EXPECT_EQ(i.mem_size, 4);
    EXPECT_EQ(i.op_size, 8);
    EXPECT_EQ(ok("6300", P32, 2).kind, K::other);               // arpl

    i = ok("8b442408", L64, 4);                                 // mov eax, [rsp+8]
    EXPECT_EQ(i.kind, K::mov_load);
    EXPECT_TRUE(i.has_sib);
    EXPECT_EQ(i.base, 4);
    EXPECT_EQ(i.index, NO);
    EXPECT_EQ(i.disp, 8);
    EXPECT_EQ(i.disp_size, 1);
    EXPECT_EQ(i.segment, Seg::ss);
    gpr[4] = 0x7000;
    EXPECT_EQ(i.ea(gpr, 0), 0x7008u);

    i = ok("8b8000010000", L64, 6);                             // mov eax, [rax+0x100]
    EXPECT_EQ(i.disp, 0x100);
    EXPECT_EQ(i.disp_size, 4);
    i = ok("8b048d00100000", L64, 7);                           // mov eax, [rcx*4+0x1000]
    EXPECT_EQ(i.base, NO);
    EXPECT_EQ(i.index, 1);
    EXPECT_EQ(i.scale, 4);
    EXPECT_FALSE(i.rip_relative);
    gpr[1] = 3;
    EXPECT_EQ(i.ea(gpr, 0), 0x100cu);
    i = ok("428b04a0", L64, 4);                                 // mov eax, [rax+r12*4]
    EXPECT_EQ(i.index, 12);
    EXPECT_EQ(i.base, 0);
    i = ok("8b0420", L64, 3);                                   // SIB index 4: none
    EXPECT_EQ(i.index, NO);
    i = ok("4b8b04e8", L64, 4);                                 // mov rax, [r8+r13*8]
    EXPECT_EQ(i.index, 13);
    EXPECT_EQ(i.base, 8);
    EXPECT_EQ(i.scale, 8);
    i = ok("418b4500", L64, 4);                                 // mov eax, [r13+0]
    EXPECT_EQ(i.base, 13);
    EXPECT_EQ(i.disp_size, 1);
    i = ok("418b0424", L64, 4);                                // mov eax, [r12]
    EXPECT_EQ(i.base, 12);
    EXPECT_TRUE(i.has_sib);
    i = ok("8b45f8", L64, 3);                                   // mov eax, [rbp-8]
    EXPECT_EQ(i.disp, -8);
    EXPECT_EQ(i.segment, Seg::ss);
    i = ok("8b042578563412", L64, 7);
    EXPECT_EQ(i.base, NO);
    EXPECT_FALSE(i.rip_relative);                               // SIB absolute disp32

    i = ok("8a20", L64, 2);                                     // mov ah, [rax]
    EXPECT_EQ(i.kind, K::mov_load);
    EXPECT_EQ(i.reg, 4);
    EXPECT_TRUE(i.high8);
    EXPECT_EQ(i.mem_size, 1);
    i = ok("408a20", L64, 3);                                   // mov spl, [rax]
    EXPECT_FALSE(i.high8);
    EXPECT_TRUE(ok("8820", P32, 2).high8);                      // mov [eax], ah
    EXPECT_FALSE(ok("8b20", P32, 2).high8);                     // mov esp, [eax]

    i = ok("a1efcdab8967452301", L64, 9);                       // mov eax, [moffs64]
    EXPECT_EQ(i.kind, K::mov_load);
    EXPECT_FALSE(i.has_modrm);
    EXPECT_TRUE(i.mem);
    EXPECT_EQ(u64(i.disp), 0x0123456789abcdefu);
    EXPECT_EQ(i.reg, 0);
    EXPECT_EQ(i.ea(gpr, 0), 0x0123456789abcdefu);
    i = ok("67a178563412", L64, 6);
    EXPECT_EQ(i.addr_size, 4);
    EXPECT_EQ(i.disp, 0x12345678);
    i = ok("48a3f0debc9a78563412", L64, 10);                    // mov [moffs64], rax
    EXPECT_EQ(i.kind, K::mov_store);
    EXPECT_EQ(i.mem_size, 8);
    EXPECT_EQ(u64(i.disp), 0x123456789abcdef0u);
    i = ok("a2f0debc9a78563412", L64, 9);
    EXPECT_EQ(i.mem_size, 1);
    EXPECT_EQ(ok("a178563412", P32, 5).kind, K::mov_load);
    EXPECT_EQ(ok("a13412", R16, 3).kind, K::mov_load);

    i = ok("8708", L64, 2);
    EXPECT_EQ(i.kind, K::xchg);
    EXPECT_EQ(i.mem_size, 4);
    EXPECT_EQ(ok("87c8", L64, 2).kind, K::other);

    i = ok("89c8", L64, 2);                                     // mov eax, ecx: no memory
    EXPECT_EQ(i.kind, K::other);
    EXPECT_FALSE(i.mem);
    EXPECT_EQ(ok("8b00", L64, 2).kind, K::mov_load);
}

TEST(X86Decode, Segments)
{
    EXPECT_EQ(ok("648b00", L64, 3).segment, Seg::fs);
    EXPECT_EQ(ok("658b00", P32, 3).segment, Seg::gs);
    EXPECT_EQ(ok("2e8b00", P32, 3).segment, Seg::cs);
    EXPECT_EQ(ok("268b00", R16, 3).segment, Seg::es);
    EXPECT_EQ(ok("368b00", P32, 3).segment, Seg::ss);
    EXPECT_EQ(ok("3e8b45f8", P32, 4).segment, Seg::ds);
    EXPECT_EQ(ok("2e8b00", L64, 3).segment, Seg::ds);            // null prefixes in 64-bit mode
    EXPECT_EQ(ok("642e8b00", L64, 4).segment, Seg::fs);
    EXPECT_EQ(ok("64658b00", L64, 4).segment, Seg::gs);          // the last one wins
    EXPECT_EQ(ok("652e8b00", P32, 4).segment, Seg::cs);
    EXPECT_EQ(ok("8b4602", R16, 3).segment, Seg::ss);            // [bp+2]
    EXPECT_EQ(ok("8b02", R16, 2).segment, Seg::ss);              // [bp+si]
    EXPECT_EQ(ok("8b00", R16, 2).segment, Seg::ds);              // [bx+si]
    EXPECT_EQ(ok("8b063412", R16, 4).segment, Seg::ds);          // [disp16]
}

TEST(X86Decode, Addressing16)
{
    for (CpuMode m : {R16, P16}) {
        Insn i = ok("8b4602", m, 3);                            // mov ax, [bp+2]
        EXPECT_EQ(i.kind, K::mov_load);
        EXPECT_EQ(i.addr_size, 2);
        EXPECT_EQ(i.op_size, 2);
        EXPECT_EQ(i.base, 5);
        EXPECT_EQ(i.index, NO);
        EXPECT_EQ(i.disp, 2);
        EXPECT_FALSE(i.has_sib);

        i = ok("8b063412", m, 4);                               // mov ax, [0x1234]
        EXPECT_EQ(i.base, NO);
        EXPECT_EQ(i.index, NO);
        EXPECT_EQ(i.disp, 0x1234);
        EXPECT_EQ(i.disp_size, 2);

        i = ok("8b00", m, 2);                                   // mov ax, [bx+si]
        EXPECT_EQ(i.base, 3);
        EXPECT_EQ(i.index, 6);
        u64 gpr[16] = {};
        gpr[3] = 0xffff;
        gpr[6] = 2;
        EXPECT_EQ(i.ea(gpr, 0), 1u);                            // wraps at 64 KiB

        i = ok("8b873412", m, 4);                               // mov ax, [bx+0x1234]
        EXPECT_EQ(i.base, 3);
        EXPECT_EQ(i.disp, 0x1234);
        i = ok("8b42fe", m, 3);                                 // mov ax, [bp+si-2]
        EXPECT_EQ(i.disp, -2);
        EXPECT_EQ(i.base, 5);
        EXPECT_EQ(i.index, 6);
        i = ok("8b4600", m, 3);                                 // [bp+0]
        EXPECT_EQ(i.base, 5);

        i = ok("678b0424", m, 4);                               // mov ax, [esp]: 32-bit addressing
        EXPECT_EQ(i.addr_size, 4);
        EXPECT_TRUE(i.has_sib);
        EXPECT_EQ(i.base, 4);
        i = ok("678b0578563412", m, 7);                         // [disp32], not RIP-relative
        EXPECT_FALSE(i.rip_relative);
        EXPECT_EQ(i.disp, 0x12345678);
        i = ok("668b063412", m, 5);                             // mov eax, [0x1234]
        EXPECT_EQ(i.op_size, 4);
        EXPECT_EQ(i.mem_size, 4);
        i = ok("c7063412cdab", m, 6);                           // mov word [0x1234], 0xabcd
        EXPECT_EQ(i.kind, K::mov_store_imm);
        EXPECT_EQ(i.imm, 0xabcdu);
        EXPECT_EQ(i.simm(), -0x5433);
        i = ok("66c7063412efbeadde", m, 9);
        EXPECT_EQ(i.imm, 0xdeadbeefu);
    }
    Insn i = ok("678b4602", P32, 4);                            // 16-bit addressing in 32-bit code
    EXPECT_EQ(i.addr_size, 2);
    EXPECT_EQ(i.base, 5);
    i = ok("678b05f0ffffff", L64, 7);                           // mov eax, [eip-0x10]
    EXPECT_TRUE(i.rip_relative);
    EXPECT_EQ(i.addr_size, 4);
    u64 gpr[16] = {};
    EXPECT_EQ(i.ea(gpr, 0x1'0000'0000), 0xfffffff7u);
    i = ok("678b00", L64, 3);                                   // mov eax, [eax]
    gpr[0] = 0xffff'ffff'0000'1000;
    EXPECT_EQ(i.ea(gpr, 0), 0x1000u);
}

TEST(X86Decode, Prefixes)
{
    Insn i = ok("48668908", L64, 4);                            // REX before 66: ignored
    EXPECT_EQ(i.rex, 0);
    EXPECT_EQ(i.op_size, 2);
    EXPECT_EQ(i.kind, K::mov_store);
    i = ok("66488908", L64, 4);                                 // REX.W beats 66
    EXPECT_EQ(i.op_size, 8);
    EXPECT_TRUE(i.opsize_pfx);
    i = ok("48408908", L64, 4);                                 // only the last REX counts
    EXPECT_EQ(i.rex, 0x40);
    EXPECT_EQ(i.op_size, 4);
    i = ok("4c8908", L64, 3);                                   // mov [rax], r9
    EXPECT_EQ(i.reg, 9);
    EXPECT_EQ(i.op_size, 8);
    i = ok("41890c24", L64, 4);                                 // REX.B on the SIB base
    EXPECT_EQ(i.base, 12);
    EXPECT_EQ(i.rm, 12);
    i = ok("f0664c0fb10a", L64, 6);                             // lock cmpxchg [rdx], r9
    EXPECT_TRUE(i.lock);
    EXPECT_EQ(i.reg, 9);
    i = ok("2e3e266436656766f0f2f38908", P32, 13);              // everything stacked
    EXPECT_EQ(i.segment, Seg::gs);
    EXPECT_EQ(i.addr_size, 2);
    EXPECT_EQ(i.op_size, 2);
    EXPECT_TRUE(i.lock);
    EXPECT_TRUE(i.rep);
    EXPECT_FALSE(i.repne);
    EXPECT_EQ(i.kind, K::mov_store);
    EXPECT_EQ(i.base, 3);                                       // [bx+si]
    EXPECT_EQ(i.index, 6);
    EXPECT_EQ(ok("40", P32, 1).kind, K::other);                 // inc eax
    EXPECT_EQ(ok("4f", R16, 1).kind, K::other);
    EXPECT_EQ(ok("4890", L64, 2).op_size, 8);
    EXPECT_EQ(fails("48", L64), Err::range);                    // a REX alone is not an instruction
}

TEST(X86Decode, Immediates)
{
    EXPECT_EQ(ok("48b8efcdab8967452301", L64, 10).imm, 0x0123456789abcdefu);
    EXPECT_EQ(ok("49bf0100000000000080", L64, 10).imm_size, 8);
    EXPECT_EQ(ok("b878563412", L64, 5).imm_size, 4);
    EXPECT_EQ(ok("66b83412", L64, 4).imm_size, 2);
    EXPECT_EQ(ok("b83412", R16, 3).imm, 0x1234u);
    EXPECT_EQ(ok("66b878563412", R16, 6).imm, 0x12345678u);
    EXPECT_EQ(ok("c8100003", L64, 4).imm, 0x030010u);           // enter 0x10, 3
    EXPECT_EQ(ok("c20800", P32, 3).imm, 8u);
    EXPECT_EQ(ok("f60811", L64, 3).imm, 0x11u);                 // test byte [rax], 0x11
    EXPECT_EQ(ok("f60811", L64, 3).kind, K::other);
    EXPECT_EQ(ok("f6c811", L64, 3).imm_size, 1);                // test /1 alias
    EXPECT_FALSE(ok("f618", L64, 2).has_imm);                   // neg byte [rax]
    EXPECT_EQ(ok("f70078563412", L64, 6).imm_size, 4);
    EXPECT_EQ(ok("66f7003412", L64, 5).imm_size, 2);
    EXPECT_EQ(ok("48f70078563412", L64, 7).imm_size, 4);
    EXPECT_EQ(ok("f7d8", L64, 2).has_imm, false);
    EXPECT_EQ(ok("f7003412", R16, 4).imm_size, 2);
    EXPECT_EQ(ok("f6403412", R16, 4).imm, 0x12u);               // test byte [bx+si+0x34], 0x12
    EXPECT_EQ(ok("6a80", L64, 2).simm(), -128);
    EXPECT_EQ(ok("6878563412", L64, 5).op_size, 8);
    EXPECT_EQ(ok("66683412", L64, 4).op_size, 2);
    EXPECT_EQ(ok("8300ff", L64, 3).simm(), -1);
    EXPECT_EQ(ok("690078563412", L64, 6).imm_size, 4);
    EXPECT_EQ(ok("6b0001", L64, 3).imm_size, 1);
}

TEST(X86Decode, Branches)
{
    EXPECT_EQ(ok("e878563412", L64, 5).simm(), 0x12345678);
    EXPECT_EQ(ok("e878563412", L64, 5).op_size, 8);
    EXPECT_EQ(ok("48e878563412", L64, 6).imm_size, 4);
    EXPECT_EQ(ok("66e83412", L64, 4).imm_size, 2);              // AMD: rel16
    EXPECT_EQ(ok("66e93412", L64, 4).imm_size, 2);
    EXPECT_EQ(ok("0f8478563412", L64, 6).imm_size, 4);
    EXPECT_EQ(ok("660f843412", L64, 5).imm_size, 2);
    EXPECT_EQ(ok("e83412", R16, 3).imm_size, 2);
    EXPECT_EQ(ok("66e878563412", R16, 6).imm_size, 4);
    EXPECT_EQ(ok("0f843412", P16, 4).imm_size, 2);
    EXPECT_EQ(ok("ebfe", L64, 2).simm(), -2);
    EXPECT_EQ(ok("e3fe", L64, 2).simm(), -2);
    EXPECT_EQ(ok("9a785634121000", P32, 7).imm_size, 6);        // call far 0x10:0x12345678
    EXPECT_EQ(ok("669a34121000", P32, 6).imm_size, 4);
    EXPECT_EQ(ok("ea34120010", R16, 5).imm, 0x10001234u);             // jmp far 0x1000:0x1234
    EXPECT_EQ(fails("9a785634121000", L64), Err::invalid);
    EXPECT_EQ(fails("ea785634121000", L64), Err::invalid);
    EXPECT_EQ(ok("ff10", L64, 2).op_size, 8);                   // call [rax]
    EXPECT_EQ(ok("ff18", L64, 2).op_size, 4);                   // call far [rax]
}

TEST(X86Decode, OpcodeMaps)
{
    Insn i = ok("660f3800c1", L64, 5);                          // pshufb xmm0, xmm1
    EXPECT_EQ(i.opcode, 0x0f3800u);
    EXPECT_FALSE(i.has_imm);
    i = ok("660f3a0fc108", L64, 6);                             // palignr xmm0, xmm1, 8
    EXPECT_EQ(i.opcode, 0x0f3a0fu);
    EXPECT_EQ(i.imm, 8u);
    i = ok("660f3a0f050000000008", L64, 10);                    // palignr xmm0, [rip], 8
    EXPECT_TRUE(i.rip_relative);
    u64 zero[16] = {};
    EXPECT_EQ(i.ea(zero, 0x100), 0x10au);
    EXPECT_EQ(ok("0f0fc19e", L64, 4).imm, 0x9eu);               // 3DNow! pfadd
    EXPECT_EQ(ok("0f0f4010b4", P32, 5).imm, 0xb4u);
    EXPECT_EQ(ok("660f78c00102", L64, 6).imm, 0x0201u);         // SSE4a extrq
    EXPECT_EQ(ok("f20f78c10102", L64, 6).imm_size, 2);          // insertq
    EXPECT_FALSE(ok("0f78c0", L64, 3).has_imm);                 // vmread
    EXPECT_EQ(ok("0fba2003", L64, 4).imm, 3u);                  // bt dword [rax], 3
    EXPECT_EQ(ok("0fa4c103", L64, 4).imm, 3u);                  // shld
    EXPECT_EQ(ok("0f1f440000", L64, 5).kind, K::other);         // nop dword [rax+rax]
    EXPECT_EQ(ok("0fc7f0", L64, 3).kind, K::other);             // rdrand eax
    EXPECT_EQ(ok("0fc8", L64, 2).opcode, 0x0fc8u);              // bswap
    EXPECT_EQ(ok("0fd8c1", L64, 3).has_modrm, true);
    EXPECT_EQ(ok("dd442408", P32, 4).disp, 8);                  // x87 fld qword [esp+8]
    EXPECT_EQ(ok("d9e8", L64, 2).has_modrm, true);              // fld1
    EXPECT_EQ(ok("c400", P32, 2).kind, K::other);               // les eax, [eax]
    EXPECT_EQ(ok("c500", R16, 2).kind, K::other);               // lds ax, [bx+si]
    EXPECT_EQ(ok("6200", P32, 2).kind, K::other);               // bound
    EXPECT_EQ(ok("8f00", L64, 2).op_size, 8);                   // pop qword [rax]
    EXPECT_EQ(ok("8fc0", P32, 2).kind, K::other);               // pop eax
    EXPECT_EQ(ok("d40a", P32, 2).imm, 10u);                     // aam
    EXPECT_EQ(ok("d6", P32, 1).kind, K::other);                 // salc
}

TEST(X86Decode, InvalidAndUnsupported)
{
    static const char *const inv64[] = {"06", "07", "0e", "16", "17", "1e", "1f", "27", "2f",
                                        "37", "3f", "60", "61", "820001", "ce", "d40a", "d50a",
                                        "d6", "9a785634121000", "ea785634121000"};
    for (const char *h : inv64) {
        EXPECT_EQ(fails(h, L64), Err::invalid) << h;
        auto r = dec(h, P32);
        EXPECT_TRUE(r.ok()) << h;
    }
    static const char *const inv[] = {"0f04", "0f0a", "0f0c", "0f24c0", "0f25c0", "0f26c0", "0f27c0",
                                      "0f36", "0f39", "0f3b", "0f3c", "0f3d", "0f3e", "0f3f",
                                      "0f7ac0", "0f7bc0", "0fa6c0", "0fa7c0"};
    for (const char *h : inv)
        for (CpuMode m : ALL_MODES)
            EXPECT_EQ(fails(h, m), Err::invalid) << h;

    // VEX, EVEX, XOP.
    for (CpuMode m : ALL_MODES) {
        EXPECT_EQ(fails("c5f877", m), Err::unsupported);        // vzeroupper
        EXPECT_EQ(fails("c4e27d18c0", m), Err::unsupported);
        EXPECT_EQ(fails("62f1fd4828c1", m), Err::unsupported);
        EXPECT_EQ(fails("8fe87890c000", m), Err::unsupported);
        EXPECT_EQ(fails("f0c5f877", m), Err::unsupported);
    }
    EXPECT_EQ(fails("c400", L64), Err::unsupported);            // no LES in 64-bit mode
    EXPECT_EQ(fails("6200", L64), Err::unsupported);
    EXPECT_EQ(fails("c4", P32), Err::range);                    // LES or VEX: needs ModRM
    EXPECT_EQ(fails("8f", L64), Err::range);
    EXPECT_EQ(fails("", L64), Err::range);
    EXPECT_EQ(decode(nullptr, 0, L64).error(), Err::range);
    EXPECT_EQ(decode(nullptr, 15, L64).error(), Err::range);
}

TEST(X86Decode, FifteenByteLimit)
{
    for (CpuMode m : ALL_MODES) {
        Insn i = ok(rep("66", 14) + "90", m, 15);
        EXPECT_EQ(i.kind, K::other);
        EXPECT_EQ(fails(rep("66", 15) + "90", m), Err::invalid);
        EXPECT_EQ(fails(rep("66", 16), m), Err::invalid);
        EXPECT_EQ(fails(rep("2e", 40), m), Err::invalid);
        EXPECT_EQ(fails(rep("66", 14), m), Err::range);          // may still end in time
        EXPECT_EQ(fails(rep("f3", 14) + "0578563412", m), Err::invalid);
        EXPECT_EQ(fails(rep("3e", 10) + "8184987856341278563412", m), Err::invalid);
        if (m == P32 || m == L64) ok(rep("3e", 4) + "8184987856341278563412", m, 15);
        else ok(rep("3e", 9) + "8184341278563412", m, 15);     // [si+disp16]
    }
    EXPECT_EQ(fails(rep("48", 15) + "90", L64), Err::invalid);
    ok(rep("48", 14) + "90", L64, 15);
    ok("2667f0818498785634123412", R16, 12);
    ok("6436f2f081849878563412785634129090", L64, 15);
    EXPECT_EQ(fails("676436f2f081849878563412785634129090", L64), Err::invalid);
}

// Lengths of instructions assembled with GNU as (`.code16` / `.code32` /
// 64-bit) and disassembled with objdump. Generated once; binutils is not
// needed to run the test.
struct LenVec {
    CpuMode mode;
    const char *hex;
    unsigned len;
};

const LenVec LENGTHS[] = {
    {R16, "670003", 3},                      // add %al,(%ebx)
    {R16, "676681431078563412", 9},          // addl $0x12345678,0x10(%ebx)
    {R16, "678084b37856341201", 9},          // addb $0x1,0x12345678(%ebx,%esi,4)
    {R16, "80f97f", 3},                      // cmp $0x7f,%cl
    {R16, "67f60312", 4},                    // testb $0x12,(%ebx)
    {R16, "6766f713", 4},                    // notl (%ebx)
    {R16, "6766f73ccb", 5},                  // idivl (%ebx,%ecx,8)
    {R16, "67660faf03", 5},                  // imul (%ebx),%eax
    {R16, "6766ff0b", 4},                    // decl (%ebx)
    {R16, "665e", 2},                        // pop %esi
    {R16, "683412", 3},                      // push $0x1234
    {R16, "9c", 1},                          // pushf
    {R16, "67668d444b10", 6},                // lea 0x10(%ebx,%ecx,2),%eax
    {R16, "67668d0424", 5},                  // lea (%esp),%eax
    {R16, "67668d4500", 5},                  // lea 0x0(%ebp),%eax
    {R16, "67668908", 4},                    // mov %ecx,(%eax)
    {R16, "67668b8080000000", 8},            // mov 0x80(%eax),%eax
    {R16, "a37856", 3},                      // mov %ax,0x5678
    {R16, "66ba78563412", 6},                // mov $0x12345678,%edx
    {R16, "67c7003412", 5},                  // movw $0x1234,(%eax)
    {R16, "678823", 3},                      // mov %ah,(%ebx)
    {R16, "678e1b", 3},                      // mov (%ebx),%ds
    {R16, "67660fb703", 5},                  // movzwl (%ebx),%eax
    {R16, "67660fbf8300010000", 9},          // movswl 0x100(%ebx),%eax
    {R16, "6691", 2},                        // xchg %eax,%ecx
    {R16, "f390", 2},                        // pause
    {R16, "66c1c003", 4},                    // rol $0x3,%eax
    {R16, "66d1e8", 3},                      // shr %eax
    {R16, "660fadc3", 4},                    // shrd %cl,%eax,%ebx
    {R16, "67660fa303", 5},                  // bt %eax,(%ebx)
    {R16, "660fc8", 3},                      // bswap %eax
    {R16, "67f00fc70b", 5},                  // lock cmpxchg8b (%ebx)
    {R16, "6766f0ff03", 5},                  // lock incl (%ebx)
    {R16, "67660f4503", 5},                  // cmovne (%ebx),%eax
    {R16, "6698", 2},                        // cwtl
    {R16, "9e", 1},                          // sahf
    {R16, "f8", 1},                          // clc
    {R16, "fb", 1},                          // sti
    {R16, "f4", 1},                          // hlt
    {R16, "f1", 1},                          // int1
    {R16, "c20800", 3},                      // ret $0x8
    {R16, "c9", 1},                          // leave
    {R16, "eb00", 2},                        // jmp 0xa5
    {R16, "0f85fc0f", 4},                    // jne 0x10a5
    {R16, "e8fd0f", 3},                      // call 0x10a9
    {R16, "67ff248b", 4},                    // jmp *(%ebx,%ecx,4)
    {R16, "e460", 2},                        // in $0x60,%al
    {R16, "e680", 2},                        // out %al,$0x80
    {R16, "ec", 1},                          // in (%dx),%al
    {R16, "ee", 1},                          // out %al,(%dx)
    {R16, "6c", 1},                          // insb (%dx),%es:(%di)
    {R16, "6e", 1},                          // outsb %ds:(%si),(%dx)
    {R16, "f36c", 2},                        // rep insb (%dx),%es:(%di)
    {R16, "6467f36e", 4},                    // rep outsb %fs:(%esi),(%dx)
    {R16, "a5", 1},                          // movsw %ds:(%si),%es:(%di)
    {R16, "f3aa", 2},                        // rep stos %al,%es:(%di)
    {R16, "ac", 1},                          // lods %ds:(%si),%al
    {R16, "a6", 1},                          // cmpsb %es:(%di),%ds:(%si)
    {R16, "66af", 2},                        // scas %es:(%di),%eax
    {R16, "0f31", 2},                        // rdtsc
    {R16, "0f32", 2},                        // rdmsr
    {R16, "0f08", 2},                        // invd
    {R16, "0f01df", 3},                      // invlpga
    {R16, "670f0133", 4},                    // lmsw (%ebx)
    {R16, "0f20c0", 3},                      // mov %cr0,%eax
    {R16, "0f22e3", 3},                      // mov %ebx,%cr4
    {R16, "0f23c0", 3},                      // mov %eax,%db0
    {R16, "670f011b", 4},                    // lidtw (%ebx)
    {R16, "0f00c0", 3},                      // sldt %ax
    {R16, "0f00e0", 3},                      // verr %ax
    {R16, "0f01c1", 3},                      // vmcall
    {R16, "0f01c4", 3},                      // vmxoff
    {R16, "0f01da", 3},                      // vmload
    {R16, "0f01dd", 3},                      // clgi
    {R16, "0f01c9", 3},                      // mwait %eax,%ecx
    {R16, "660fc7f0", 4},                    // rdrand %eax
    {R16, "670fae2b", 4},                    // xrstor (%ebx)
    {R16, "0faee8", 3},                      // lfence
    {R16, "670fae3b", 4},                    // clflush (%ebx)
    {R16, "0f0b", 2},                        // ud2
    {R16, "0f05", 2},                        // syscall
    {R16, "0faa", 2},                        // rsm
    {R16, "67d95b04", 4},                    // fstps 0x4(%ebx)
    {R16, "dfe0", 2},                        // fnstsw %ax
    {R16, "d9fa", 2},                        // fsqrt
    {R16, "0f28d1", 3},                      // movaps %xmm1,%xmm2
    {R16, "67660f6f0b", 5},                  // movdqa (%ebx),%xmm1
    {R16, "67660fd603", 5},                  // movq %xmm0,(%ebx)
    {R16, "67660fd41b", 5},                  // paddq (%ebx),%xmm3
    {R16, "660f71d103", 5},                  // psrlw $0x3,%xmm1
    {R16, "660fc5c002", 5},                  // pextrw $0x2,%xmm0,%eax
    {R16, "670fc20b01", 5},                  // cmpltps (%ebx),%xmm1
    {R16, "f20f2cc0", 4},                    // cvttsd2si %xmm0,%eax
    {R16, "660f2ec8", 4},                    // ucomisd %xmm0,%xmm1
    {R16, "660f3800c8", 5},                  // pshufb %xmm0,%xmm1
    {R16, "67660f38300b", 6},                // pmovzxbw (%ebx),%xmm1
    {R16, "660f3a0fc803", 6},                // palignr $0x3,%xmm0,%xmm1
    {R16, "67660f3a160301", 7},              // pextrd $0x1,%xmm0,(%ebx)
    {R16, "67660f3a610b12", 7},              // pcmpestri $0x12,(%ebx),%xmm1
    {R16, "660f3a44c811", 6},                // pclmulhqhqdq %xmm0,%xmm1
    {R16, "f20f38f0c0", 5},                  // crc32 %al,%eax
    {R16, "67660f38f103", 6},                // movbe %eax,(%ebx)
    {R16, "66f30fbcc8", 5},                  // tzcnt %eax,%ecx
    {R16, "660f79c1", 4},                    // extrq %xmm1,%xmm0
    {R16, "670f0f0bb4", 5},                  // pfmul (%ebx),%mm1
    {R16, "0f01fc", 3},                      // clzero
    {R16, "f30fc7f8", 4},                    // rdpid %eax
    {R16, "c6f801", 3},                      // xabort $0x1
    {R16, "0f01d6", 3},                      // xtest
    {R16, "67f30f38f60b", 6},                // adox (%ebx),%ecx
    {R16, "8b04", 2},                        // mov (%si),%ax
    {R16, "8b4602", 3},                      // mov 0x2(%bp),%ax
    {R16, "a13412", 3},                      // mov 0x1234,%ax
    {R16, "8b00", 2},                        // mov (%bx,%si),%ax
    {R16, "8b4910", 3},                      // mov 0x10(%bx,%di),%cx
    {R16, "8b923412", 4},                    // mov 0x1234(%bp,%si),%dx
    {R16, "8b9b3412", 4},                    // mov 0x1234(%bp,%di),%bx
    {R16, "8a4512", 3},                      // mov 0x12(%di),%al
    {R16, "8a07", 2},                        // mov (%bx),%al
    {R16, "8946fe", 3},                      // mov %ax,-0x2(%bp)
    {R16, "c78734123412", 6},                // movw $0x1234,0x1234(%bx)
    {R16, "66c70778563412", 7},              // movl $0x12345678,(%bx)
    {R16, "c60412", 3},                      // movb $0x12,(%si)
    {R16, "678b00", 3},                      // mov (%eax),%ax
    {R16, "67668b442408", 6},                // mov 0x8(%esp),%eax
    {R16, "67668b0c9d78563412", 9},          // mov 0x12345678(,%ebx,4),%ecx
    {R16, "6766a178563412", 7},              // addr32 mov 0x12345678,%eax
    {R16, "66a13412", 4},                    // mov 0x1234,%eax
    {R16, "8d02", 2},                        // lea (%bp,%si),%ax
    {R16, "6a12", 2},                        // push $0x12
    {R16, "666878563412", 6},                // pushl $0x12345678
    {R16, "ea34120010", 5},                  // ljmp $0x1000,$0x1234
    {R16, "9a34120010", 5},                  // lcall $0x1000,$0x1234
    {R16, "66ea785634120010", 8},            // ljmpl $0x1000,$0x12345678
    {R16, "e9fd00", 3},                      // jmp 0x2f6
    {R16, "0f84fc00", 4},                    // je 0x2f9
    {R16, "e8fd00", 3},                      // call 0x2fd
    {R16, "66e8fa000000", 6},                // calll 0x300
    {R16, "c407", 2},                        // les (%bx),%ax
    {R16, "c504", 2},                        // lds (%si),%ax
    {R16, "6207", 2},                        // bound %ax,(%bx)
    {R16, "6307", 2},                        // arpl %ax,(%bx)
    {R16, "d40a", 2},                        // aam $0xa
    {R16, "d50a", 2},                        // aad $0xa
    {R16, "27", 1},                          // daa
    {R16, "06", 1},                          // push %es
    {R16, "1f", 1},                          // pop %ds
    {R16, "60", 1},                          // pusha
    {R16, "61", 1},                          // popa
    {R16, "ce", 1},                          // into
    {R16, "0f22c0", 3},                      // mov %eax,%cr0
    {R16, "0f0117", 3},                      // lgdtw (%bx)
    {R16, "660f0117", 4},                    // lgdtl (%bx)
    {R16, "0f0138", 3},                      // invlpg (%bx,%si)
    {R16, "f3a5", 2},                        // rep movsw %ds:(%si),%es:(%di)
    {R16, "f36d", 2},                        // rep insw (%dx),%es:(%di)
    {R16, "aa", 1},                          // stos %al,%es:(%di)
    {R16, "646766f08184987856341278563412", 15}, // lock addl $0x12345678,%fs:0x12345678(%eax...
    {R16, "26c78234123412", 7},              // movw $0x1234,%es:0x1234(%bp,%si)
    {R16, "2667f0818498785634123412", 12},   // lock addw $0x1234,%es:0x12345678(%eax,%eb...
    {P32, "0003", 2},                        // add %al,(%ebx)
    {P32, "0412", 2},                        // add $0x12,%al
    {P32, "0578563412", 5},                  // add $0x12345678,%eax
    {P32, "81431078563412", 7},              // addl $0x12345678,0x10(%ebx)
    {P32, "6681033412", 5},                  // addw $0x1234,(%ebx)
    {P32, "830301", 3},                      // addl $0x1,(%ebx)
    {P32, "8084b37856341201", 8},            // addb $0x1,0x12345678(%ebx,%esi,4)
    {P32, "29ca", 2},                        // sub %ecx,%edx
    {P32, "338580000000", 6},                // xor 0x80(%ebp),%eax
    {P32, "80f97f", 3},                      // cmp $0x7f,%cl
    {P32, "a812", 2},                        // test $0x12,%al
    {P32, "a978563412", 5},                  // test $0x12345678,%eax
    {P32, "f60312", 3},                      // testb $0x12,(%ebx)
    {P32, "f7460878563412", 7},              // testl $0x12345678,0x8(%esi)
    {P32, "66f7073412", 5},                  // testw $0x1234,(%edi)
    {P32, "f713", 2},                        // notl (%ebx)
    {P32, "f75b04", 3},                      // negl 0x4(%ebx)
    {P32, "f7e1", 2},                        // mul %ecx
    {P32, "f73ccb", 3},                      // idivl (%ebx,%ecx,8)
    {P32, "6bd112", 3},                      // imul $0x12,%ecx,%edx
    {P32, "69d145230100", 6},                // imul $0x12345,%ecx,%edx
    {P32, "0faf03", 3},                      // imul (%ebx),%eax
    {P32, "6669d13412", 5},                  // imul $0x1234,%cx,%dx
    {P32, "41", 1},                          // inc %ecx
    {P32, "ff0b", 2},                        // decl (%ebx)
    {P32, "fe4301", 3},                      // incb 0x1(%ebx)
    {P32, "53", 1},                          // push %ebx
    {P32, "5e", 1},                          // pop %esi
    {P32, "6a12", 2},                        // push $0x12
    {P32, "6878563412", 5},                  // push $0x12345678
    {P32, "66683412", 4},                    // pushw $0x1234
    {P32, "ff33", 2},                        // push (%ebx)
    {P32, "8f4304", 3},                      // pop 0x4(%ebx)
    {P32, "9c", 1},                          // pushf
    {P32, "9d", 1},                          // popf
    {P32, "669c", 2},                        // pushfw
    {P32, "8d444b10", 4},                    // lea 0x10(%ebx,%ecx,2),%eax
    {P32, "8d04cd00000000", 7},              // lea 0x0(,%ecx,8),%eax
    {P32, "8d04cd78563412", 7},              // lea 0x12345678(,%ecx,8),%eax
    {P32, "8d0424", 3},                      // lea (%esp),%eax
    {P32, "8d442410", 4},                    // lea 0x10(%esp),%eax
    {P32, "8d842c00100000", 7},              // lea 0x1000(%esp,%ebp,1),%eax
    {P32, "8d4500", 3},                      // lea 0x0(%ebp),%eax
    {P32, "8d0578563412", 6},                // lea 0x12345678,%eax
    {P32, "8900", 2},                        // mov %eax,(%eax)
    {P32, "8908", 2},                        // mov %ecx,(%eax)
    {P32, "8b08", 2},                        // mov (%eax),%ecx
    {P32, "8b442408", 4},                    // mov 0x8(%esp),%eax
    {P32, "8b8080000000", 6},                // mov 0x80(%eax),%eax
    {P32, "a278563412", 5},                  // mov %al,0x12345678
    {P32, "a178563412", 5},                  // mov 0x12345678,%eax
    {P32, "66a378563412", 6},                // mov %ax,0x12345678
    {P32, "a078563412", 5},                  // mov 0x12345678,%al
    {P32, "b112", 2},                        // mov $0x12,%cl
    {P32, "ba78563412", 5},                  // mov $0x12345678,%edx
    {P32, "66ba3412", 4},                    // mov $0x1234,%dx
    {P32, "c70078563412", 6},                // movl $0x12345678,(%eax)
    {P32, "66c7003412", 5},                  // movw $0x1234,(%eax)
    {P32, "c60012", 3},                      // movb $0x12,(%eax)
    {P32, "c744981078563412", 8},            // movl $0x12345678,0x10(%eax,%ebx,4)
    {P32, "8823", 2},                        // mov %ah,(%ebx)
    {P32, "8a3b", 2},                        // mov (%ebx),%bh
    {P32, "8c03", 2},                        // mov %es,(%ebx)
    {P32, "8e1b", 2},                        // mov (%ebx),%ds
    {P32, "8cd0", 2},                        // mov %ss,%eax
    {P32, "0fb603", 3},                      // movzbl (%ebx),%eax
    {P32, "0fb703", 3},                      // movzwl (%ebx),%eax
    {P32, "660fb603", 4},                    // movzbw (%ebx),%ax
    {P32, "0fbe4301", 4},                    // movsbl 0x1(%ebx),%eax
    {P32, "0fbf8300010000", 7},              // movswl 0x100(%ebx),%eax
    {P32, "8703", 2},                        // xchg %eax,(%ebx)
    {P32, "8603", 2},                        // xchg %al,(%ebx)
    {P32, "91", 1},                          // xchg %eax,%ecx
    {P32, "6692", 2},                        // xchg %ax,%dx
    {P32, "90", 1},                          // nop
    {P32, "f390", 2},                        // pause
    {P32, "660f1f0400", 5},                  // nopw (%eax,%eax,1)
    {P32, "0f1f00", 3},                      // nopl (%eax)
    {P32, "c1c003", 3},                      // rol $0x3,%eax
    {P32, "d3e3", 2},                        // shl %cl,%ebx
    {P32, "c13b05", 3},                      // sarl $0x5,(%ebx)
    {P32, "d1e8", 2},                        // shr %eax
    {P32, "d01b", 2},                        // rcrb (%ebx)
    {P32, "0fa40303", 4},                    // shld $0x3,%eax,(%ebx)
    {P32, "0fadc3", 3},                      // shrd %cl,%eax,%ebx
    {P32, "0fbae003", 4},                    // bt $0x3,%eax
    {P32, "0fba2b03", 4},                    // btsl $0x3,(%ebx)
    {P32, "0fa303", 3},                      // bt %eax,(%ebx)
    {P32, "0fbcc8", 3},                      // bsf %eax,%ecx
    {P32, "0fbd0b", 3},                      // bsr (%ebx),%ecx
    {P32, "0fc8", 2},                        // bswap %eax
    {P32, "0fb10b", 3},                      // cmpxchg %ecx,(%ebx)
    {P32, "0fb00b", 3},                      // cmpxchg %cl,(%ebx)
    {P32, "f00fc70b", 4},                    // lock cmpxchg8b (%ebx)
    {P32, "0fc103", 3},                      // xadd %eax,(%ebx)
    {P32, "f0830301", 4},                    // lock addl $0x1,(%ebx)
    {P32, "f0ff03", 3},                      // lock incl (%ebx)
    {P32, "0f94c0", 3},                      // sete %al
    {P32, "0f9503", 3},                      // setne (%ebx)
    {P32, "0f4503", 3},                      // cmovne (%ebx),%eax
    {P32, "0f44c1", 3},                      // cmove %ecx,%eax
    {P32, "6698", 2},                        // cbtw
    {P32, "98", 1},                          // cwtl
    {P32, "99", 1},                          // cltd
    {P32, "6699", 2},                        // cwtd
    {P32, "9e", 1},                          // sahf
    {P32, "9f", 1},                          // lahf
    {P32, "f5", 1},                          // cmc
    {P32, "f8", 1},                          // clc
    {P32, "f9", 1},                          // stc
    {P32, "fa", 1},                          // cli
    {P32, "fb", 1},                          // sti
    {P32, "fc", 1},                          // cld
    {P32, "fd", 1},                          // std
    {P32, "f4", 1},                          // hlt
    {P32, "cc", 1},                          // int3
    {P32, "cd80", 2},                        // int $0x80
    {P32, "f1", 1},                          // int1
    {P32, "cf", 1},                          // iret
    {P32, "c3", 1},                          // ret
    {P32, "c20800", 3},                      // ret $0x8
    {P32, "cb", 1},                          // lret
    {P32, "ca0800", 3},                      // lret $0x8
    {P32, "c9", 1},                          // leave
    {P32, "c8100000", 4},                    // enter $0x10,$0x0
    {P32, "c8341203", 4},                    // enter $0x1234,$0x3
    {P32, "eb00", 2},                        // jmp 0x186
    {P32, "e9fb0f0000", 5},                  // jmp 0x1186
    {P32, "7400", 2},                        // je 0x18d
    {P32, "0f85fa0f0000", 6},                // jne 0x118d
    {P32, "e300", 2},                        // jecxz 0x195
    {P32, "e200", 2},                        // loop 0x197
    {P32, "e8fb0f0000", 5},                  // call 0x1197
    {P32, "ffd0", 2},                        // call *%eax
    {P32, "ff13", 2},                        // call *(%ebx)
    {P32, "ff248b", 3},                      // jmp *(%ebx,%ecx,4)
    {P32, "ff1b", 2},                        // lcall *(%ebx)
    {P32, "ff2b", 2},                        // ljmp *(%ebx)
    {P32, "e460", 2},                        // in $0x60,%al
    {P32, "66e560", 3},                      // in $0x60,%ax
    {P32, "e560", 2},                        // in $0x60,%eax
    {P32, "e680", 2},                        // out %al,$0x80
    {P32, "66e780", 3},                      // out %ax,$0x80
    {P32, "e780", 2},                        // out %eax,$0x80
    {P32, "ec", 1},                          // in (%dx),%al
    {P32, "66ed", 2},                        // in (%dx),%ax
    {P32, "ed", 1},                          // in (%dx),%eax
    {P32, "ee", 1},                          // out %al,(%dx)
    {P32, "66ef", 2},                        // out %ax,(%dx)
    {P32, "ef", 1},                          // out %eax,(%dx)
    {P32, "6c", 1},                          // insb (%dx),%es:(%edi)
    {P32, "666d", 2},                        // insw (%dx),%es:(%edi)
    {P32, "6d", 1},                          // insl (%dx),%es:(%edi)
    {P32, "6e", 1},                          // outsb %ds:(%esi),(%dx)
    {P32, "666f", 2},                        // outsw %ds:(%esi),(%dx)
    {P32, "6f", 1},                          // outsl %ds:(%esi),(%dx)
    {P32, "f36c", 2},                        // rep insb (%dx),%es:(%edi)
    {P32, "66f36d", 3},                      // rep insw (%dx),%es:(%edi)
    {P32, "f36f", 2},                        // rep outsl %ds:(%esi),(%dx)
    {P32, "64f36e", 3},                      // rep outsb %fs:(%esi),(%dx)
    {P32, "a4", 1},                          // movsb %ds:(%esi),%es:(%edi)
    {P32, "a5", 1},                          // movsl %ds:(%esi),%es:(%edi)
    {P32, "66a5", 2},                        // movsw %ds:(%esi),%es:(%edi)
    {P32, "f3a4", 2},                        // rep movsb %ds:(%esi),%es:(%edi)
    {P32, "f3a5", 2},                        // rep movsl %ds:(%esi),%es:(%edi)
    {P32, "f3aa", 2},                        // rep stos %al,%es:(%edi)
    {P32, "f3ab", 2},                        // rep stos %eax,%es:(%edi)
    {P32, "66ab", 2},                        // stos %ax,%es:(%edi)
    {P32, "ac", 1},                          // lods %ds:(%esi),%al
    {P32, "ad", 1},                          // lods %ds:(%esi),%eax
    {P32, "f3ad", 2},                        // rep lods %ds:(%esi),%eax
    {P32, "a6", 1},                          // cmpsb %es:(%edi),%ds:(%esi)
    {P32, "f3a6", 2},                        // repz cmpsb %es:(%edi),%ds:(%esi)
    {P32, "f2ae", 2},                        // repnz scas %es:(%edi),%al
    {P32, "af", 1},                          // scas %es:(%edi),%eax
    {P32, "d7", 1},                          // xlat %ds:(%ebx)
    {P32, "0fa2", 2},                        // cpuid
    {P32, "0f31", 2},                        // rdtsc
    {P32, "0f01f9", 3},                      // rdtscp
    {P32, "0f33", 2},                        // rdpmc
    {P32, "0f32", 2},                        // rdmsr
    {P32, "0f30", 2},                        // wrmsr
    {P32, "0f09", 2},                        // wbinvd
    {P32, "0f08", 2},                        // invd
    {P32, "0f0138", 3},                      // invlpg (%eax)
    {P32, "0f017c8b10", 5},                  // invlpg 0x10(%ebx,%ecx,4)
    {P32, "0f01df", 3},                      // invlpga
    {P32, "0f06", 2},                        // clts
    {P32, "0f01f0", 3},                      // lmsw %ax
    {P32, "0f0133", 3},                      // lmsw (%ebx)
    {P32, "0f01e0", 3},                      // smsw %eax
    {P32, "0f0123", 3},                      // smsw (%ebx)
    {P32, "0f20c0", 3},                      // mov %cr0,%eax
    {P32, "0f22c0", 3},                      // mov %eax,%cr0
    {P32, "0f20db", 3},                      // mov %cr3,%ebx
    {P32, "0f22e3", 3},                      // mov %ebx,%cr4
    {P32, "0f20d0", 3},                      // mov %cr2,%eax
    {P32, "0f21f8", 3},                      // mov %db7,%eax
    {P32, "0f23c0", 3},                      // mov %eax,%db0
    {P32, "0f0113", 3},                      // lgdtl (%ebx)
    {P32, "0f014310", 4},                    // sgdtl 0x10(%ebx)
    {P32, "0f011b", 3},                      // lidtl (%ebx)
    {P32, "0f010b", 3},                      // sidtl (%ebx)
    {P32, "0f00d0", 3},                      // lldt %ax
    {P32, "660f00c0", 4},                    // sldt %ax
    {P32, "0f00d8", 3},                      // ltr %ax
    {P32, "660f00c8", 4},                    // str %ax
    {P32, "0f00e0", 3},                      // verr %ax
    {P32, "0f02c8", 3},                      // lar %eax,%ecx
    {P32, "0f030b", 3},                      // lsl (%ebx),%ecx
    {P32, "0f01c1", 3},                      // vmcall
    {P32, "0f01c2", 3},                      // vmlaunch
    {P32, "0f01c3", 3},                      // vmresume
    {P32, "0f01c4", 3},                      // vmxoff
    {P32, "0f01d9", 3},                      // vmmcall
    {P32, "0f01d8", 3},                      // vmrun
    {P32, "0f01da", 3},                      // vmload
    {P32, "0f01db", 3},                      // vmsave
    {P32, "0f01dc", 3},                      // stgi
    {P32, "0f01dd", 3},                      // clgi
    {P32, "0f01de", 3},                      // skinit
    {P32, "0f01c8", 3},                      // monitor %eax,%ecx,%edx
    {P32, "0f01c9", 3},                      // mwait %eax,%ecx
    {P32, "0f01d0", 3},                      // xgetbv
    {P32, "0f01d1", 3},                      // xsetbv
    {P32, "0fc7f0", 3},                      // rdrand %eax
    {P32, "0fc7f8", 3},                      // rdseed %eax
    {P32, "0fae23", 3},                      // xsave (%ebx)
    {P32, "0fae2b", 3},                      // xrstor (%ebx)
    {P32, "0fae03", 3},                      // fxsave (%ebx)
    {P32, "0fae4b10", 4},                    // fxrstor 0x10(%ebx)
    {P32, "0faee8", 3},                      // lfence
    {P32, "0faef0", 3},                      // mfence
    {P32, "0faef8", 3},                      // sfence
    {P32, "0fae3b", 3},                      // clflush (%ebx)
    {P32, "0f180b", 3},                      // prefetcht0 (%ebx)
    {P32, "0f0d0b", 3},                      // prefetchw (%ebx)
    {P32, "0f0b", 2},                        // ud2
    {P32, "0f77", 2},                        // emms
    {P32, "0f0e", 2},                        // femms
    {P32, "0f05", 2},                        // syscall
    {P32, "0f34", 2},                        // sysenter
    {P32, "0f35", 2},                        // sysexit
    {P32, "0faa", 2},                        // rsm
    {P32, "d9c1", 2},                        // fld %st(1)
    {P32, "dd03", 2},                        // fldl (%ebx)
    {P32, "d95b04", 3},                      // fstps 0x4(%ebx)
    {P32, "d8c2", 2},                        // fadd %st(2),%st
    {P32, "da03", 2},                        // fiaddl (%ebx)
    {P32, "dfe0", 2},                        // fnstsw %ax
    {P32, "d93b", 2},                        // fnstcw (%ebx)
    {P32, "d9ee", 2},                        // fldz
    {P32, "d9fa", 2},                        // fsqrt
    {P32, "dfe9", 2},                        // fucomip %st(1),%st
    {P32, "9b", 1},                          // fwait
    {P32, "0f28d1", 3},                      // movaps %xmm1,%xmm2
    {P32, "0f2803", 3},                      // movaps (%ebx),%xmm0
    {P32, "0f114310", 4},                    // movups %xmm0,0x10(%ebx)
    {P32, "660f6f0b", 4},                    // movdqa (%ebx),%xmm1
    {P32, "f30f7f0b", 4},                    // movdqu %xmm1,(%ebx)
    {P32, "660f6ec0", 4},                    // movd %eax,%xmm0
    {P32, "660fd603", 4},                    // movq %xmm0,(%ebx)
    {P32, "0f6fc8", 3},                      // movq %mm0,%mm1
    {P32, "0ffcc8", 3},                      // paddb %mm0,%mm1
    {P32, "660fd41b", 4},                    // paddq (%ebx),%xmm3
    {P32, "660f70c81b", 5},                  // pshufd $0x1b,%xmm0,%xmm1
    {P32, "0f70c81b", 4},                    // pshufw $0x1b,%mm0,%mm1
    {P32, "660f71d103", 5},                  // psrlw $0x3,%xmm1
    {P32, "0f72f103", 4},                    // pslld $0x3,%mm1
    {P32, "660f73da04", 5},                  // psrldq $0x4,%xmm2
    {P32, "660fc5c002", 5},                  // pextrw $0x2,%xmm0,%eax
    {P32, "660fc40302", 5},                  // pinsrw $0x2,(%ebx),%xmm0
    {P32, "0fc6c844", 4},                    // shufps $0x44,%xmm0,%xmm1
    {P32, "0fc20b01", 4},                    // cmpltps (%ebx),%xmm1
    {P32, "f30fc2c801", 5},                  // cmpltss %xmm0,%xmm1
    {P32, "f20f2ac0", 4},                    // cvtsi2sd %eax,%xmm0
    {P32, "f20f2cc0", 4},                    // cvttsd2si %xmm0,%eax
    {P32, "f20f584308", 5},                  // addsd 0x8(%ebx),%xmm0
    {P32, "0f51c8", 3},                      // sqrtps %xmm0,%xmm1
    {P32, "660f2ec8", 4},                    // ucomisd %xmm0,%xmm1
    {P32, "0fc303", 3},                      // movnti %eax,(%ebx)
    {P32, "0ff7c8", 3},                      // maskmovq %mm0,%mm1
    {P32, "660f3800c8", 5},                  // pshufb %xmm0,%xmm1
    {P32, "0f38000b", 4},                    // pshufb (%ebx),%mm1
    {P32, "660f3801c8", 5},                  // phaddw %xmm0,%xmm1
    {P32, "660f38300b", 5},                  // pmovzxbw (%ebx),%xmm1
    {P32, "660f3817c8", 5},                  // ptest %xmm0,%xmm1
    {P32, "660f38404c4b10", 7},              // pmulld 0x10(%ebx,%ecx,2),%xmm1
    {P32, "660f3a0fc803", 6},                // palignr $0x3,%xmm0,%xmm1
    {P32, "0f3a0f0b03", 5},                  // palignr $0x3,(%ebx),%mm1
    {P32, "660f3a20c001", 6},                // pinsrb $0x1,%eax,%xmm0
    {P32, "660f3a160301", 6},                // pextrd $0x1,%xmm0,(%ebx)
    {P32, "660f3a0ac801", 6},                // roundss $0x1,%xmm0,%xmm1
    {P32, "660f3a0cc803", 6},                // blendps $0x3,%xmm0,%xmm1
    {P32, "660f3a610b12", 6},                // pcmpestri $0x12,(%ebx),%xmm1
    {P32, "660f38dcc8", 5},                  // aesenc %xmm0,%xmm1
    {P32, "660f3adfc801", 6},                // aeskeygenassist $0x1,%xmm0,%xmm1
    {P32, "660f3a44c811", 6},                // pclmulhqhqdq %xmm0,%xmm1
    {P32, "0f3accc801", 5},                  // sha1rnds4 $0x1,%xmm0,%xmm1
    {P32, "0f38cbc8", 4},                    // sha256rnds2 %xmm0,%xmm0,%xmm1
    {P32, "f20f38f0c0", 5},                  // crc32 %al,%eax
    {P32, "f20f38f103", 5},                  // crc32l (%ebx),%eax
    {P32, "0f38f003", 4},                    // movbe (%ebx),%eax
    {P32, "0f38f103", 4},                    // movbe %eax,(%ebx)
    {P32, "f30fb8c8", 4},                    // popcnt %eax,%ecx
    {P32, "f30fbd0b", 4},                    // lzcnt (%ebx),%ecx
    {P32, "f30fbcc8", 4},                    // tzcnt %eax,%ecx
    {P32, "660f78c00102", 6},                // extrq $0x2,$0x1,%xmm0
    {P32, "f20f78c10102", 6},                // insertq $0x2,$0x1,%xmm1,%xmm0
    {P32, "660f79c1", 4},                    // extrq %xmm1,%xmm0
    {P32, "f30f2b03", 4},                    // movntss %xmm0,(%ebx)
    {P32, "0f0fc89e", 4},                    // pfadd %mm0,%mm1
    {P32, "0f0f0bb4", 4},                    // pfmul (%ebx),%mm1
    {P32, "0f0f5310bf", 5},                  // pavgusb 0x10(%ebx),%mm2
    {P32, "0f0d03", 3},                      // prefetch (%ebx)
    {P32, "0f01fc", 3},                      // clzero
    {P32, "0f01fa", 3},                      // monitorx %eax,%ecx,%edx
    {P32, "0f01fb", 3},                      // mwaitx %eax,%ecx,%ebx
    {P32, "f30fc7f8", 4},                    // rdpid %eax
    {P32, "f30f1efb", 4},                    // endbr32
    {P32, "0fb903", 3},                      // ud1 (%ebx),%eax
    {P32, "c6f801", 3},                      // xabort $0x1
    {P32, "c7f8fa0f0000", 6},                // xbegin 0x13e8
    {P32, "0f01d5", 3},                      // xend
    {P32, "0f01d6", 3},                      // xtest
    {P32, "f30f1a03", 4},                    // bndcl (%ebx),%bnd0
    {P32, "660f38f6c8", 5},                  // adcx %eax,%ecx
    {P32, "f30f38f60b", 5},                  // adox (%ebx),%ecx
    {P32, "0f37", 2},                        // getsec
    {P32, "67668b00", 4},                    // mov (%bx,%si),%ax
    {P32, "67668b833412", 6},                // mov 0x1234(%bp,%di),%ax
    {P32, "67a13412", 4},                    // addr16 mov 0x1234,%eax
    {P32, "c403", 2},                        // les (%ebx),%eax
    {P32, "c54604", 3},                      // lds 0x4(%esi),%eax
    {P32, "6203", 2},                        // bound %eax,(%ebx)
    {P32, "6303", 2},                        // arpl %ax,(%ebx)
    {P32, "d40a", 2},                        // aam $0xa
    {P32, "d50a", 2},                        // aad $0xa
    {P32, "37", 1},                          // aaa
    {P32, "2f", 1},                          // das
    {P32, "06", 1},                          // push %es
    {P32, "0e", 1},                          // push %cs
    {P32, "16", 1},                          // push %ss
    {P32, "1f", 1},                          // pop %ds
    {P32, "60", 1},                          // pusha
    {P32, "61", 1},                          // popa
    {P32, "ce", 1},                          // into
    {P32, "ea785634121000", 7},              // ljmp $0x10,$0x12345678
    {P32, "9a785634121000", 7},              // lcall $0x10,$0x12345678
    {P32, "66ea34121000", 6},                // ljmpw $0x10,$0x1234
    {P32, "268b03", 3},                      // mov %es:(%ebx),%eax
    {P32, "64a110000000", 6},                // mov %fs:0x10,%eax
    {P32, "658b0473", 4},                    // mov %gs:(%ebx,%esi,2),%eax
    {P32, "368b00", 3},                      // mov %ss:(%eax),%eax
    {P32, "2ea178563412", 6},                // mov %cs:0x12345678,%eax
    {P32, "67f3a4", 3},                      // rep movsb %ds:(%si),%es:(%di)
    {P32, "66f36f", 3},                      // rep outsw %ds:(%esi),(%dx)
    {P32, "64f08184b37856341278563412", 13}, // lock addl $0x12345678,%fs:0x12345678(%ebx...
    {P32, "656766f0818334123412", 10},       // lock addw $0x1234,%gs:0x1234(%bp,%di)
    {L64, "0412", 2},                        // add $0x12,%al
    {L64, "80f97f", 3},                      // cmp $0x7f,%cl
    {L64, "a812", 2},                        // test $0x12,%al
    {L64, "6a12", 2},                        // push $0x12
    {L64, "6878563412", 5},                  // push $0x12345678
    {L64, "66683412", 4},                    // pushw $0x1234
    {L64, "9c", 1},                          // pushf
    {L64, "9d", 1},                          // popf
    {L64, "669c", 2},                        // pushfw
    {L64, "88042578563412", 7},              // mov %al,0x12345678
    {L64, "8a042578563412", 7},              // mov 0x12345678,%al
    {L64, "b112", 2},                        // mov $0x12,%cl
    {L64, "90", 1},                          // nop
    {L64, "f390", 2},                        // pause
    {L64, "0f94c0", 3},                      // sete %al
    {L64, "6698", 2},                        // cbtw
    {L64, "98", 1},                          // cwtl
    {L64, "99", 1},                          // cltd
    {L64, "6699", 2},                        // cwtd
    {L64, "9e", 1},                          // sahf
    {L64, "9f", 1},                          // lahf
    {L64, "f5", 1},                          // cmc
    {L64, "f8", 1},                          // clc
    {L64, "f9", 1},                          // stc
    {L64, "fa", 1},                          // cli
    {L64, "fb", 1},                          // sti
    {L64, "fc", 1},                          // cld
    {L64, "fd", 1},                          // std
    {L64, "f4", 1},                          // hlt
    {L64, "cc", 1},                          // int3
    {L64, "cd80", 2},                        // int $0x80
    {L64, "f1", 1},                          // int1
    {L64, "cf", 1},                          // iret
    {L64, "c3", 1},                          // ret
    {L64, "c20800", 3},                      // ret $0x8
    {L64, "cb", 1},                          // lret
    {L64, "ca0800", 3},                      // lret $0x8
    {L64, "c9", 1},                          // leave
    {L64, "c8100000", 4},                    // enter $0x10,$0x0
    {L64, "c8341203", 4},                    // enter $0x1234,$0x3
    {L64, "eb00", 2},                        // jmp 0x54
    {L64, "e9fb0f0000", 5},                  // jmp 0x1054
    {L64, "7400", 2},                        // je 0x5b
    {L64, "0f85fa0f0000", 6},                // jne 0x105b
    {L64, "e200", 2},                        // loop 0x63
    {L64, "e8fb0f0000", 5},                  // call 0x1063
    {L64, "e460", 2},                        // in $0x60,%al
    {L64, "e680", 2},                        // out %al,$0x80
    {L64, "6c", 1},                          // insb (%dx),%es:(%rdi)
    {L64, "666d", 2},                        // insw (%dx),%es:(%rdi)
    {L64, "6d", 1},                          // insl (%dx),%es:(%rdi)
    {L64, "6e", 1},                          // outsb %ds:(%rsi),(%dx)
    {L64, "666f", 2},                        // outsw %ds:(%rsi),(%dx)
    {L64, "6f", 1},                          // outsl %ds:(%rsi),(%dx)
    {L64, "f36c", 2},                        // rep insb (%dx),%es:(%rdi)
    {L64, "66f36d", 3},                      // rep insw (%dx),%es:(%rdi)
    {L64, "f36f", 2},                        // rep outsl %ds:(%rsi),(%dx)
    {L64, "a4", 1},                          // movsb %ds:(%rsi),%es:(%rdi)
    {L64, "a5", 1},                          // movsl %ds:(%rsi),%es:(%rdi)
    {L64, "66a5", 2},                        // movsw %ds:(%rsi),%es:(%rdi)
    {L64, "f3a4", 2},                        // rep movsb %ds:(%rsi),%es:(%rdi)
    {L64, "f3a5", 2},                        // rep movsl %ds:(%rsi),%es:(%rdi)
    {L64, "f3aa", 2},                        // rep stos %al,%es:(%rdi)
    {L64, "f3ab", 2},                        // rep stos %eax,%es:(%rdi)
    {L64, "66ab", 2},                        // stos %ax,%es:(%rdi)
    {L64, "ac", 1},                          // lods %ds:(%rsi),%al
    {L64, "ad", 1},                          // lods %ds:(%rsi),%eax
    {L64, "f3ad", 2},                        // rep lods %ds:(%rsi),%eax
    {L64, "a6", 1},                          // cmpsb %es:(%rdi),%ds:(%rsi)
    {L64, "f3a6", 2},                        // repz cmpsb %es:(%rdi),%ds:(%rsi)
    {L64, "f2ae", 2},                        // repnz scas %es:(%rdi),%al
    {L64, "af", 1},                          // scas %es:(%rdi),%eax
    {L64, "d7", 1},                          // xlat %ds:(%rbx)
    {L64, "0fa2", 2},                        // cpuid
    {L64, "0f31", 2},                        // rdtsc
    {L64, "0f01f9", 3},                      // rdtscp
    {L64, "0f33", 2},                        // rdpmc
    {L64, "0f32", 2},                        // rdmsr
    {L64, "0f30", 2},                        // wrmsr
    {L64, "0f09", 2},                        // wbinvd
    {L64, "0f08", 2},                        // invd
    {L64, "0f01df", 3},                      // invlpga
    {L64, "0f06", 2},                        // clts
    {L64, "0f01c1", 3},                      // vmcall
    {L64, "0f01c2", 3},                      // vmlaunch
    {L64, "0f01c3", 3},                      // vmresume
    {L64, "0f01c4", 3},                      // vmxoff
    {L64, "0f01d9", 3},                      // vmmcall
    {L64, "0f01d8", 3},                      // vmrun
    {L64, "0f01da", 3},                      // vmload
    {L64, "0f01db", 3},                      // vmsave
    {L64, "0f01dc", 3},                      // stgi
    {L64, "0f01dd", 3},                      // clgi
    {L64, "0f01de", 3},                      // skinit
    {L64, "0f01c8", 3},                      // monitor %rax,%ecx,%edx
    {L64, "0f01c9", 3},                      // mwait %eax,%ecx
    {L64, "0f01d0", 3},                      // xgetbv
    {L64, "0f01d1", 3},                      // xsetbv
    {L64, "0faee8", 3},                      // lfence
    {L64, "0faef0", 3},                      // mfence
    {L64, "0faef8", 3},                      // sfence
    {L64, "0f0b", 2},                        // ud2
    {L64, "0f77", 2},                        // emms
    {L64, "0f0e", 2},                        // femms
    {L64, "0f05", 2},                        // syscall
    {L64, "0faa", 2},                        // rsm
    {L64, "d9c1", 2},                        // fld %st(1)
    {L64, "d8c2", 2},                        // fadd %st(2),%st
    {L64, "d9ee", 2},                        // fldz
    {L64, "d9fa", 2},                        // fsqrt
    {L64, "dfe9", 2},                        // fucomip %st(1),%st
    {L64, "9b", 1},                          // fwait
    {L64, "0f28d1", 3},                      // movaps %xmm1,%xmm2
    {L64, "0f6fc8", 3},                      // movq %mm0,%mm1
    {L64, "0ffcc8", 3},                      // paddb %mm0,%mm1
    {L64, "660f70c81b", 5},                  // pshufd $0x1b,%xmm0,%xmm1
    {L64, "0f70c81b", 4},                    // pshufw $0x1b,%mm0,%mm1
    {L64, "660f71d103", 5},                  // psrlw $0x3,%xmm1
    {L64, "0f72f103", 4},                    // pslld $0x3,%mm1
    {L64, "660f73da04", 5},                  // psrldq $0x4,%xmm2
    {L64, "0fc6c844", 4},                    // shufps $0x44,%xmm0,%xmm1
    {L64, "f30fc2c801", 5},                  // cmpltss %xmm0,%xmm1
    {L64, "0f51c8", 3},                      // sqrtps %xmm0,%xmm1
    {L64, "660f2ec8", 4},                    // ucomisd %xmm0,%xmm1
    {L64, "0ff7c8", 3},                      // maskmovq %mm0,%mm1
    {L64, "660f3800c8", 5},                  // pshufb %xmm0,%xmm1
    {L64, "660f3801c8", 5},                  // phaddw %xmm0,%xmm1
    {L64, "660f3817c8", 5},                  // ptest %xmm0,%xmm1
    {L64, "660f3a0fc803", 6},                // palignr $0x3,%xmm0,%xmm1
    {L64, "660f3a0ac801", 6},                // roundss $0x1,%xmm0,%xmm1
    {L64, "660f3a0cc803", 6},                // blendps $0x3,%xmm0,%xmm1
    {L64, "660f38dcc8", 5},                  // aesenc %xmm0,%xmm1
    {L64, "660f3adfc801", 6},                // aeskeygenassist $0x1,%xmm0,%xmm1
    {L64, "660f3a44c811", 6},                // pclmulhqhqdq %xmm0,%xmm1
    {L64, "0f3accc801", 5},                  // sha1rnds4 $0x1,%xmm0,%xmm1
    {L64, "0f38cbc8", 4},                    // sha256rnds2 %xmm0,%xmm0,%xmm1
    {L64, "660f78c00102", 6},                // extrq $0x2,$0x1,%xmm0
    {L64, "f20f78c10102", 6},                // insertq $0x2,$0x1,%xmm1,%xmm0
    {L64, "660f79c1", 4},                    // extrq %xmm1,%xmm0
    {L64, "0f0fc89e", 4},                    // pfadd %mm0,%mm1
    {L64, "0f01fc", 3},                      // clzero
    {L64, "0f01fa", 3},                      // monitorx %rax,%ecx,%edx
    {L64, "0f01fb", 3},                      // mwaitx %eax,%ecx,%ebx
    {L64, "f30f1efb", 4},                    // endbr32
    {L64, "c6f801", 3},                      // xabort $0x1
    {L64, "c7f8fa0f0000", 6},                // xbegin 0x1187
    {L64, "0f01d5", 3},                      // xend
    {L64, "0f01d6", 3},                      // xtest
    {L64, "0f37", 2},                        // getsec
    {L64, "488900", 3},                      // mov %rax,(%rax)
    {L64, "8908", 2},                        // mov %ecx,(%rax)
    {L64, "488b08", 3},                      // mov (%rax),%rcx
    {L64, "488b0578563412", 7},              // mov 0x12345678(%rip),%rax # 0x1234581c
    {L64, "8b0510000000", 6},                // mov 0x10(%rip),%eax # 0x1ba
    {L64, "890510000000", 6},                // mov %eax,0x10(%rip) # 0x1c0
    {L64, "c7051000000078563412", 10},       // movl $0x12345678,0x10(%rip) # 0x1ca
    {L64, "c6051000000012", 7},              // movb $0x12,0x10(%rip) # 0x1d1
    {L64, "4d8901", 3},                      // mov %r8,(%r9)
    {L64, "4d8b2c24", 4},                    // mov (%r12),%r13
    {L64, "4d8b6500", 4},                    // mov 0x0(%r13),%r12
    {L64, "488b442408", 5},                  // mov 0x8(%rsp),%rax
    {L64, "498b442408", 5},                  // mov 0x8(%r12),%rax
    {L64, "4a8b0420", 4},                    // mov (%rax,%r12,1),%rax
    {L64, "4f8b14c8", 4},                    // mov (%r8,%r9,8),%r10
    {L64, "4e8b144d78563412", 8},            // mov 0x12345678(,%r9,2),%r10
    {L64, "488b4500", 4},                    // mov 0x0(%rbp),%rax
    {L64, "498b4500", 4},                    // mov 0x0(%r13),%rax
    {L64, "48b8f0debc9a78563412", 10},       // movabs $0x123456789abcdef0,%rax
    {L64, "49bff0debc9a78563412", 10},       // movabs $0x123456789abcdef0,%r15
    {L64, "41b878563412", 6},                // mov $0x12345678,%r8d
    {L64, "6641b83412", 5},                  // mov $0x1234,%r8w
    {L64, "41b012", 3},                      // mov $0x12,%r8b
    {L64, "40b612", 3},                      // mov $0x12,%sil
    {L64, "408830", 3},                      // mov %sil,(%rax)
    {L64, "408a38", 3},                      // mov (%rax),%dil
    {L64, "8820", 2},                        // mov %ah,(%rax)
    {L64, "48c700ffffffff", 7},              // movq $0xffffffffffffffff,(%rax)
    {L64, "48c744981078563412", 9},          // movq $0x12345678,0x10(%rax,%rbx,4)
    {L64, "6641c7003412", 6},                // movw $0x1234,(%r8)
    {L64, "a0f0debc9a78563412", 9},          // movabs 0x123456789abcdef0,%al
    {L64, "48a1f0debc9a78563412", 10},       // movabs 0x123456789abcdef0,%rax
    {L64, "a3f0debc9a78563412", 9},          // movabs %eax,0x123456789abcdef0
    {L64, "66a3f0debc9a78563412", 10},       // movabs %ax,0x123456789abcdef0
    {L64, "67a178563412", 6},                // addr32 mov 0x12345678,%eax
    {L64, "678b00", 3},                      // mov (%eax),%eax
    {L64, "678b0510000000", 7},              // mov 0x10(%eip),%eax # 0x277
    {L64, "67418b00", 4},                    // mov (%r8d),%eax
    {L64, "0fb600", 3},                      // movzbl (%rax),%eax
    {L64, "4c0fb700", 4},                    // movzwq (%rax),%r8
    {L64, "66450fb611", 5},                  // movzbw (%r9),%r10w
    {L64, "480fbe00", 4},                    // movsbq (%rax),%rax
    {L64, "410fbf08", 4},                    // movswl (%r8),%ecx
    {L64, "486300", 3},                      // movslq (%rax),%rax
    {L64, "4c630d10000000", 7},              // movslq 0x10(%rip),%r9 # 0x299
    {L64, "488703", 3},                      // xchg %rax,(%rbx)
    {L64, "448603", 3},                      // xchg %r8b,(%rbx)
    {L64, "488d0510000000", 7},              // lea 0x10(%rip),%rax # 0x2a6
    {L64, "4154", 2},                        // push %r12
    {L64, "415d", 2},                        // pop %r13
    {L64, "ff30", 2},                        // push (%rax)
    {L64, "0fa0", 2},                        // push %fs
    {L64, "0fa9", 2},                        // pop %gs
    {L64, "ffd0", 2},                        // call *%rax
    {L64, "ff10", 2},                        // call *(%rax)
    {L64, "ff2510000000", 6},                // jmp *0x10(%rip) # 0x2c7
    {L64, "ff18", 2},                        // lcall *(%rax)
    {L64, "48ff18", 3},                      // rex.W lcall *(%rax)
    {L64, "48cf", 2},                        // iretq
    {L64, "0f07", 2},                        // sysretl
    {L64, "480f07", 3},                      // sysretq
    {L64, "0f01f8", 3},                      // swapgs
    {L64, "480fc708", 4},                    // cmpxchg16b (%rax)
    {L64, "f0490fc708", 5},                  // lock cmpxchg16b (%r8)
    {L64, "48a5", 2},                        // movsq %ds:(%rsi),%es:(%rdi)
    {L64, "f348a5", 3},                      // rep movsq %ds:(%rsi),%es:(%rdi)
    {L64, "f348ab", 3},                      // rep stos %rax,%es:(%rdi)
    {L64, "48ad", 2},                        // lods %ds:(%rsi),%rax
    {L64, "f36d", 2},                        // rep insl (%dx),%es:(%rdi)
    {L64, "f36e", 2},                        // rep outsb %ds:(%rsi),(%dx)
    {L64, "e780", 2},                        // out %eax,$0x80
    {L64, "ed", 1},                          // in (%dx),%eax
    {L64, "66ef", 2},                        // out %ax,(%dx)
    {L64, "440f20c0", 4},                    // mov %cr8,%rax
    {L64, "440f22c0", 4},                    // mov %rax,%cr8
    {L64, "410f20df", 4},                    // mov %cr3,%r15
    {L64, "410f22df", 4},                    // mov %r15,%cr3
    {L64, "0f20c0", 3},                      // mov %cr0,%rax
    {L64, "0f22e0", 3},                      // mov %rax,%cr4
    {L64, "0f21f8", 3},                      // mov %db7,%rax
    {L64, "410f23c8", 4},                    // mov %r8,%db1
    {L64, "0f0138", 3},                      // invlpg (%rax)
    {L64, "0f013d10000000", 7},              // invlpg 0x10(%rip) # 0x331
    {L64, "410f013c24", 5},                  // invlpg (%r12)
    {L64, "66480f7ec0", 5},                  // movq %xmm0,%rax
    {L64, "664c0f6ec0", 5},                  // movq %rax,%xmm8
    {L64, "f3450f6f08", 5},                  // movdqu (%r8),%xmm9
    {L64, "66480f3a22c001", 7},              // pinsrq $0x1,%rax,%xmm0
    {L64, "66480f3a16c001", 7},              // pextrq $0x1,%xmm0,%rax
    {L64, "66470f3a0b249101", 8},            // roundsd $0x1,(%r9,%r10,4),%xmm12
    {L64, "f2480f38f1c0", 6},                // crc32 %rax,%rax
    {L64, "f34d0fb8c8", 5},                  // popcnt %r8,%r9
    {L64, "4d69c878563412", 7},              // imul $0x12345678,%r8,%r9
    {L64, "48810078563412", 7},              // addq $0x12345678,(%rax)
    {L64, "4883051000000001", 8},            // addq $0x1,0x10(%rip) # 0x37c
    {L64, "803d1000000001", 7},              // cmpb $0x1,0x10(%rip) # 0x383
    {L64, "48f7051000000078563412", 11},     // testq $0x12345678,0x10(%rip) # 0x38e
    {L64, "f6051000000012", 7},              // testb $0x12,0x10(%rip) # 0x395
    {L64, "48c1251000000003", 8},            // shlq $0x3,0x10(%rip) # 0x39d
    {L64, "480fa4051000000003", 9},          // shld $0x3,%rax,0x10(%rip) # 0x3a6
    {L64, "480fba251000000003", 9},          // btq $0x3,0x10(%rip) # 0x3af
    {L64, "660f70051000000001", 9},          // pshufd $0x1,0x10(%rip),%xmm0 # 0x3b8
    {L64, "660f3a0f051000000001", 10},       // palignr $0x1,0x10(%rip),%xmm0 # 0x3c2
    {L64, "66410f78c00102", 7},              // extrq $0x2,$0x1,%xmm8
    {L64, "648b00", 3},                      // mov %fs:(%rax),%eax
    {L64, "658b042510000000", 8},            // mov %gs:0x10,%eax
    {L64, "64488b042528000000", 9},          // mov %fs:0x28,%rax
    {L64, "65498b00", 4},                    // mov %gs:(%r8),%rax
    {L64, "f048830001", 5},                  // lock addq $0x1,(%rax)
    {L64, "f0480fc103", 5},                  // lock xadd %rax,(%rbx)
    {L64, "480fb10a", 4},                    // cmpxchg %rcx,(%rdx)
    {L64, "f3480faec0", 5},                  // rdfsbase %rax
    {L64, "f3490faed8", 5},                  // wrgsbase %r8
    {L64, "490fc7f0", 4},                    // rdrand %r8
    {L64, "f30fc7f8", 4},                    // rdpid %rax
    {L64, "f30f1efa", 4},                    // endbr64
    {L64, "660fae38", 4},                    // clflushopt (%rax)
    {L64, "660fae30", 4},                    // clwb (%rax)
    {L64, "480fae20", 4},                    // xsave64 (%rax)
    {L64, "490fae00", 4},                    // fxsave64 (%r8)
    {L64, "2e660f1f0400", 6},                // cs nopw (%rax,%rax,1)
    {L64, "480f7ec0", 4},                    // movq %mm0,%rax
    {L64, "490fc8", 3},                      // bswap %r8
    {L64, "480fc8", 3},                      // bswap %rax
    {L64, "c8080000", 4},                    // enter $0x8,$0x0
    {L64, "48cb", 2},                        // lretq
    {L64, "6467f0488184987856341278563412", 15}, // lock addq $0x12345678,%fs:0x12345678(%eax...
    {L64, "65f0438184887856341278563412", 14}, // lock addl $0x12345678,%gs:0x12345678(%r8,...
    {L64, "6448a3f0debc9a78563412", 11},     // movabs %rax,%fs:0x123456789abcdef0
    {L64, "65f0440fc10578563412", 10},       // lock xadd %r8d,%gs:0x12345678(%rip) # 0x1...
};

TEST(X86Decode, AssembledLengths)
{
    for (const LenVec &v : LENGTHS)
        ok(v.hex, v.mode, v.len);
}

// Random bytes in every mode: never a crash or an overread (exact-size
// copies under ASan), lengths in bounds, and the result depends only on
// the instruction's own bytes.
TEST(X86Decode, RandomBytes)
{
    std::mt19937 rng(12345);
    for (int iter = 0; iter < 20000; iter++) {
        std::vector<u8> b(rng() % 18);
        for (u8 &x : b) {
            x = u8(rng());
            if (rng() % 4 == 0) {                               // favour prefixes and escapes
                static const u8 pick[] = {0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x64, 0x48, 0x41, 0x0f, 0x0f, 0x38, 0x3a};
                x = pick[rng() % sizeof(pick)];
            }
        }
        CpuMode m = ALL_MODES[rng() % 4];
        auto r = dec_n(b, b.size(), m);
        if (!r.ok()) {
            EXPECT_TRUE(r.error() == Err::range || r.error() == Err::invalid || r.error() == Err::unsupported);
            continue;
        }
        ASSERT_GE(r->len, 1);
        ASSERT_LE(r->len, 15);
        ASSERT_LE(r->len, b.size());
        auto exact = dec_n(b, r->len, m);
        ASSERT_TRUE(exact.ok());
        EXPECT_EQ(exact->len, r->len);
        EXPECT_EQ(exact->kind, r->kind);
        EXPECT_EQ(exact->imm, r->imm);
        EXPECT_EQ(exact->disp, r->disp);
        if (r->len > 1) EXPECT_EQ(dec_n(b, r->len - 1u, m).error(), Err::range);
    }
}

// decode()'s fast path for MMIO MOVs (88-8B, C6/C7 /0) gives, field for field, what the
// general decoder gives: every ModRM, every SIB where one follows, every REX, 32- and 64-bit
// code, and every truncation of a few of them (exact-size copies: ASan sees any overread).
bool same_insn(const Insn &a, const Insn &b)
{
    return a.kind == b.kind && a.len == b.len && a.opcode == b.opcode && a.op_size == b.op_size &&
           a.mem_size == b.mem_size && a.addr_size == b.addr_size && a.segment == b.segment && a.rex == b.rex &&
           a.lock == b.lock && a.rep == b.rep && a.repne == b.repne && a.opsize_pfx == b.opsize_pfx &&
           a.has_modrm == b.has_modrm && a.mod == b.mod && a.reg == b.reg && a.rm == b.rm && a.high8 == b.high8 &&
           a.mem == b.mem && a.has_sib == b.has_sib && a.scale == b.scale && a.index == b.index &&
           a.base == b.base && a.rip_relative == b.rip_relative && a.disp == b.disp &&
           a.disp_size == b.disp_size && a.has_imm == b.has_imm && a.imm_size == b.imm_size && a.imm == b.imm &&
           a.port == b.port && a.port_in_dx == b.port_in_dx;
}

TEST(X86DecodeFast, MmioMovsMatchTheGeneralDecoder)
{
    const u8 ops[] = {0x88, 0x89, 0x8a, 0x8b, 0xc6, 0xc7};
    usize compared = 0, fast_kinds = 0;
    for (CpuMode m : {P32, L64, P16, R16}) {
        for (int rex = -1; rex < 16; rex++) {
            if (rex >= 0 && m != L64) continue;
            for (u8 op : ops) {
                for (unsigned modrm = 0; modrm < 256; modrm++) {
                    const bool sib = (modrm & 7) == 4 && modrm >> 6 != 3;
                    for (unsigned s = 0; s < (sib ? 256u : 1u); s++) {
                        std::vector<u8> b;
                        if (rex >= 0) b.push_back(u8(0x40 | rex));
                        b.insert(b.end(), {op, u8(modrm)});
                        if (sib) b.push_back(u8(s));
                        b.insert(b.end(), {0x78, 0x56, 0x34, 0x92, 0xef, 0xcd, 0xab, 0x89});
                        const auto f = decode(b.data(), b.size(), m), g = x86::decode_general(b.data(), b.size(), m);
                        ASSERT_EQ(f.ok(), g.ok());
                        if (!f.ok()) continue;
                        ASSERT_TRUE(same_insn(*f, *g)) << "op " << int(op) << " modrm " << modrm << " sib " << s
                                                       << " rex " << rex << " mode " << int(m);
                        compared++;
                        fast_kinds += f->kind == K::mov_load || f->kind == K::mov_store || f->kind == K::mov_store_imm;
                        if (modrm % 37 == 0 && s % 61 == 0)   // truncations: out of bytes the same way
                            for (usize n = 0; n < f->len; n++) {
                                const auto tf = dec_n(b, n, m);
                                auto p = std::make_unique<u8[]>(n ? n : 1);
                                if (n) memcpy(p.get(), b.data(), n);
                                const auto tg = x86::decode_general(p.get(), n, m);
                                ASSERT_EQ(tf.ok(), tg.ok());
                                if (!tf.ok()) ASSERT_EQ(tf.error(), tg.error());
                            }
                    }
                }
            }
        }
    }
    EXPECT_GT(compared, 100000u);
    EXPECT_GT(fast_kinds, 50000u);
}

} // namespace
