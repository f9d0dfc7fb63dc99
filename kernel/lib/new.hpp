// Placement new, the only form Keel uses (there is no kernel heap behind new).
#pragma once

#include "kernel/lib/types.hpp"

#ifdef KEEL_HOST_TEST
#include <new>
#else
inline void *operator new(usize, void *p) noexcept { return p; }
#endif
