// Taking an exception on purpose: a guest that wants to know whether one
// instruction faults arms the probe, runs the instruction from inline asm that
// first stores the address to resume at, and reads what was taken:
//
//     probe_install();                       // once: sets the runtime's trap_hook
//     probe_arm();
//     asm volatile("movl $1f, %0\n\t"
//                  "movl %1, %%cr4\n"
//                  "1:" : "=m"(probe.resume) : "r"(value) : "memory");
//     u32 v = probe_done();                  // kNoFault, or the vector taken
//
// A fault (EIP at the instruction) resumes at probe.resume; a trap such as a
// data breakpoint's #DB (EIP already after the instruction) resumes there too
// when probe.resume is 0. #DB also records DR6 and clears EFLAGS.TF in the
// interrupted context. Exceptions while the probe is not armed go to the
// runtime's usual report (unexpected exception, exit 0xEE00 | vector).
#pragma once
#include "guest.hpp"

constexpr u32 kNoFault = 0xffffffff;

struct Probe {
    u32 armed;
    u32 resume;     // where to continue after a fault (0: at the saved EIP)
    u32 vector;     // kNoFault, or the first vector taken while armed
    u32 error;      // its error code (0 if it has none)
    u32 eip;        // the saved EIP (the faulting instruction, or after a trap)
    u32 dr6;        // DR6 when the vector was #DB
    u32 count;      // exceptions taken while armed
};
inline volatile Probe probe;

inline bool probe_trap(TrapFrame* f) {
    if (!probe.armed) return false;
    const u32 n = probe.count;
    probe.count = n + 1;
    if (n == 0) {
        probe.vector = f->vector;
        probe.error = f->error;
        probe.eip = f->eip;
        if (f->vector == 1) {
            u32 dr6;
            asm volatile("movl %%dr6, %0" : "=r"(dr6));
            probe.dr6 = dr6;
        }
    }
    if (f->vector == 1) f->eflags &= ~0x100u;   // single-step: stop stepping
    if (probe.resume) f->eip = probe.resume;
    probe.armed = 0;
    return true;
}

inline void probe_install() { trap_hook = probe_trap; }

inline void probe_arm() {
    probe.vector = kNoFault;
    probe.error = 0;
    probe.eip = 0;
    probe.dr6 = 0;
    probe.count = 0;
    probe.resume = 0;
    asm volatile("" ::: "memory");
    probe.armed = 1;
}

inline u32 probe_done() {
    probe.armed = 0;
    asm volatile("" ::: "memory");
    return probe.vector;
}

// Instructions guests probe often, each under the probe: the vector taken, or kNoFault.
inline u32 try_write_cr4(u32 v) {
    probe_arm();
    asm volatile("movl $1f, %0\n\t"
                 "movl %1, %%cr4\n"
                 "1:" : "=m"(probe.resume) : "r"(v) : "memory");
    return probe_done();
}

inline u32 try_xsetbv(u32 xcr, u64 v) {
    probe_arm();
    asm volatile("movl $1f, %0\n\t"
                 "xsetbv\n"
                 "1:" : "=m"(probe.resume) : "c"(xcr), "a"(u32(v)), "d"(u32(v >> 32)) : "memory");
    return probe_done();
}

inline u32 try_xgetbv(u32 xcr, u64* out) {
    u32 lo = 0xdeadbeef, hi = 0xdeadbeef;
    probe_arm();
    asm volatile("movl $1f, %2\n\t"
                 "xgetbv\n"
                 "1:" : "+a"(lo), "+d"(hi), "=m"(probe.resume) : "c"(xcr) : "memory");
    *out = u64(hi) << 32 | lo;
    return probe_done();
}

inline const char* vector_name(u32 v) {
    switch (v) {
    case kNoFault: return "no fault";
    case 1: return "#DB";
    case 6: return "#UD";
    case 13: return "#GP";
    default: return "another exception";
    }
}
