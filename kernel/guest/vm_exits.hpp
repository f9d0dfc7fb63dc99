// Exit handlers, written once for SVM and VMX: they see a normalised exit,
// the guest's registers, the VcpuOps seam and the guest's own platform.
#pragma once

#include "kernel/guest/vcpu.hpp"
#include "kernel/vdev/guest_platform.hpp"

ExitOutcome handle_exit(const ExitInfo &e, Gprs &g, VcpuOps &ops, GuestPlatform &p, u32 vcpu_index);

// Data and I/O breakpoints on an access Keel emulated (SDM vol. 3 17.2.4-17.2.5): the DR6 bits
// B0-B3 of the breakpoints it hits. A breakpoint hits when DR7 enables it (L or G), its type
// matches (RW=01 writes, RW=11 reads and writes, RW=10 I/O ports but only with CR4.DE) and its
// range, DRn aligned down to its length (1, 2, 4 or 8 bytes), overlaps [addr, addr + size).
enum class BpAccess : u8 { read, write, io };
u32 breakpoint_hits(u64 dr7, const u64 (&drs)[4], u64 addr, u8 size, BpAccess access, bool cr4_de);

inline constexpr u32 KEEL_CPUID_MAX = CpuProfile::HV_LEAF_MAX;
