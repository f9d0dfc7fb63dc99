#include "arch/x86_64/virt.hpp"

#include "arch/x86_64/guest_state.hpp"
#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/svm.hpp"
#include "arch/x86_64/vmx.hpp"
#include "kernel/lib/new.hpp"

namespace virt {
namespace {
Vendor vendor_ = Vendor::none;
}

Vendor init_boot_cpu(const char *&why)
{
    const char *svm_why = svm::unsupported();
    const char *vmx_why = vmx::unsupported();
    if (!svm_why) vendor_ = Vendor::svm;
    else if (!vmx_why) vendor_ = Vendor::vmx;
    else {
        // Say why for the vendor this CPU belongs to.
        why = (x86::cpuid(0x80000001).c & (1u << 2)) ? svm_why : (x86::cpuid(1).c & (1u << 5)) ? vmx_why
              : "the CPU has neither SVM nor VMX";
        return vendor_;
    }
    if (auto s = init_cpu(); !s) {
        why = "enabling virtualization failed";
        vendor_ = Vendor::none;
    }
    return vendor_;
}

Status init_cpu()
{
    // Guest register state is switched by Keel on every CPU that runs guests (XSAVE, DRs, SPEC_CTRL).
    KEEL_TRY(gstate::init_cpu());
    switch (vendor_) {
    case Vendor::svm: return svm::enable_cpu();
    case Vendor::vmx: return vmx::enable_cpu();
    default: return Err::unsupported;
    }
}

Vendor vendor() { return vendor_; }
const char *vendor_name() { return vendor_ == Vendor::svm ? "svm" : vendor_ == Vendor::vmx ? "vmx" : "none"; }

ArchVcpu *make_vcpu(void *storage)
{
    return vendor_ == Vendor::svm ? svm::make_vcpu(storage) : vmx::make_vcpu(storage);
}

void flush_all_guest_tlbs()
{
    if (vendor_ == Vendor::svm) svm::flush_all();
    else vmx::flush_all();
}

Status NestedSpace::init()
{
    kind_ = vendor_;
    // Superpages as large as the hardware walks: 1 GiB when CPUID/EPT capabilities say so.
    unsigned levels = kind_ == Vendor::svm ? (mm::has_1g_pages() ? 3 : 2) : vmx::ept_max_leaf_level();
    if (kind_ == Vendor::svm) return (new (storage_) Npt(mem_, levels))->init();
    return (new (storage_) Ept(mem_, levels))->init();
}

Status NestedSpace::map(GuestPhys gpa, PhysAddr hpa, u64 size, bool exec, CacheType cache)
{
    // NPT: the cache type as the host PAT index in PWT/PCD/PAT of the nested leaf (HOST_PAT_VALUE,
    // which the nested walk uses); EPT: the memory type in bits 5:3 (UC = 0), IPAT clear. Either
    // way combined with the guest's own PAT, and UC stays UC whatever the guest says.
    Attr a{Perm{.r = true, .w = true, .x = exec}, cache};
    return kind_ == Vendor::svm ? npt()->map(gpa.raw(), hpa.raw(), size, a) : ept()->map(gpa.raw(), hpa.raw(), size, a);
}

Result<bool> NestedSpace::unmap(GuestPhys gpa, u64 size)
{
    return kind_ == Vendor::svm ? npt()->unmap(gpa.raw(), size, false) : ept()->unmap(gpa.raw(), size, false);
}

void NestedSpace::destroy()
{
    if (kind_ == Vendor::svm) npt()->destroy();
    else if (kind_ == Vendor::vmx) ept()->destroy();
    kind_ = Vendor::none;
}

PhysAddr NestedSpace::root() const { return kind_ == Vendor::svm ? npt()->root() : ept()->root(); }

Result<PhysAddr> NestedSpace::translate(GuestPhys gpa) const
{
    auto pa = [&](const auto *tables) -> Result<PhysAddr> {
        auto l = tables->lookup(gpa.raw());
        if (!l) return l.error();
        return PhysAddr(l->pa);
    };
    if (kind_ == Vendor::svm) return pa(npt());
    if (kind_ == Vendor::vmx) return pa(ept());
    return Err::not_found;
}

} // namespace virt
