// AMD SVM with nested paging.
#pragma once

#include "arch/x86_64/virt.hpp"

namespace svm {

// Why SVM cannot be used on this CPU, or nullptr if it can.
const char *unsupported();
Status enable_cpu();
virt::ArchVcpu *make_vcpu(void *storage);
void flush_all();

} // namespace svm
