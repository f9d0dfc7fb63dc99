// Hardware virtualization, vendor-neutral on the outside: SVM with nested
// paging (AMD) or VMX with EPT and VPID (Intel). Keel picks what the CPU has.
#pragma once

#include "arch/x86_64/mm.hpp"
#include "kernel/guest/vcpu.hpp"
#include "kernel/mem/ptab.hpp"
#include "kernel/mem/ptab_formats.hpp"

namespace virt {

enum class Vendor : u8 { none, svm, vmx };

// On the boot CPU: detect and enable; `why` says what is missing when none.
Vendor init_boot_cpu(const char *&why);
// On every other CPU, once the boot CPU succeeded.
Status init_cpu();
Vendor vendor();
const char *vendor_name();

// The initial state of a vCPU: 32-bit protected mode, flat, paging off (Multiboot), or
// 64-bit long mode on page tables and a GDT the loader built (Linux's 64-bit boot protocol).
// General registers are the caller's (Gprs).
struct EntryState {
    enum class Mode : u8 { flat32, long64 };
    Mode mode = Mode::flat32;
    u64 rip = 0;
    u64 cr0 = 0x11, cr3 = 0, cr4 = 0, efer = 0;   // long64: PG|PE, the tables, PAE, LME|LMA
    u64 gdt_base = 0;
    u16 gdt_limit = 0xffff;
    u16 cs = 0x08, ds = 0x10;
    u64 cr4_reserved = 0;   // CR4 bits the guest's CPU profile hides: setting one must #GP
};

// A guest's second-level address space (NPT or EPT), built by the one page-table engine.
class NestedSpace {
public:
    Status init();
    // RAM is mapped write-back; a device's registers (a passed-through BAR) with CacheType::uc.
    // Err::exists if anything in the range is mapped already (nothing changed then).
    Status map(GuestPhys gpa, PhysAddr hpa, u64 size, bool exec = true, CacheType cache = CacheType::wb);
    // Take [gpa, gpa+size) out while guests may run on it: the tables stay (freed by destroy()),
    // so no walker can hold a freed one. Returns whether anything was mapped; then the caller
    // must flush_all_guest_tlbs(), and the old translation is gone only once every CPU that
    // runs this space has entered the guest again (each flushes before its next entry).
    Result<bool> unmap(GuestPhys gpa, u64 size);
    void destroy();
    PhysAddr root() const;
    // Where the nested tables send `gpa` (Err::not_found: nothing mapped there). For reports.
    Result<PhysAddr> translate(GuestPhys gpa) const;
    u64 table_pages() const { return mem_.pages; }

private:
    using Npt = PageTable<NptFormat, mm::FrameTableMem>;
    using Ept = PageTable<EptFormat, mm::FrameTableMem>;
    mm::FrameTableMem mem_;
    Vendor kind_ = Vendor::none;
    alignas(8) u8 storage_[sizeof(Npt) > sizeof(Ept) ? sizeof(Npt) : sizeof(Ept)] = {};
    Npt *npt() { return reinterpret_cast<Npt *>(storage_); }
    Ept *ept() { return reinterpret_cast<Ept *>(storage_); }
    const Npt *npt() const { return reinterpret_cast<const Npt *>(storage_); }
    const Ept *ept() const { return reinterpret_cast<const Ept *>(storage_); }
};

// One vCPU's hardware side: set up once, then loaded on its CPU for each slice (VcpuHandle).
class ArchVcpu : public VcpuHandle {
public:
    // `owner` names the guest (IBPB when a CPU switches between different owners).
    virtual Status setup(const NestedSpace &space, const EntryState &entry, u64 owner) = 0;

protected:
    ~ArchVcpu() = default;
};

inline constexpr usize ARCH_VCPU_STORAGE = 384;
// Construct the backend for this CPU's vendor in `storage` (ARCH_VCPU_STORAGE bytes, 16-aligned).
ArchVcpu *make_vcpu(void *storage);

// Called when a guest's memory is about to be reused: every CPU flushes its
// guest TLBs (ASIDs / EPT / VPIDs) before it next enters any guest.
void flush_all_guest_tlbs();

} // namespace virt
