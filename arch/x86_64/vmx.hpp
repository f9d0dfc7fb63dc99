// Intel VMX with EPT, VPID and unrestricted guest.
#pragma once

#include "arch/x86_64/virt.hpp"

namespace vmx {

// Why VMX cannot be used on this CPU, or nullptr if it can.
const char *unsupported();
Status enable_cpu();
virt::ArchVcpu *make_vcpu(void *storage);
void flush_all();
unsigned ept_max_leaf_level();

} // namespace vmx
