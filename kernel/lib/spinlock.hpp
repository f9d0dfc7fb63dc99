// A ticket-free test-and-test-and-set spinlock, portable (compiler atomics only).
#pragma once

#include "kernel/lib/types.hpp"

class Spinlock {
public:
    void lock()
    {
        while (__atomic_exchange_n(&locked_, true, __ATOMIC_ACQUIRE))
            while (__atomic_load_n(&locked_, __ATOMIC_RELAXED))
                __builtin_ia32_pause();
    }
    void unlock() { __atomic_store_n(&locked_, false, __ATOMIC_RELEASE); }

private:
    bool locked_ = false;
};

template <class L>
class Guard {
public:
    explicit Guard(L &l) : l_(l) { l_.lock(); }
    ~Guard() { l_.unlock(); }
    Guard(const Guard &) = delete;
    Guard &operator=(const Guard &) = delete;

private:
    L &l_;
};
