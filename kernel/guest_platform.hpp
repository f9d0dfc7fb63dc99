// What one guest's exit handlers and device models can reach: its own memory,
// its own devices, its own exit request. Nothing global, by construction.
#pragma once

#include "guest_memory.hpp"
#include "types.hpp"

// A device on the guest's I/O port space.
class IoDevice {
public:
    // Handle an access if the port is ours; value is in/out (low `size` bytes).
    virtual bool io(u16 port, u8 size, bool in, u32 &value) = 0;

protected:
    ~IoDevice() = default;
};

struct GuestPlatform {
    static constexpr usize MAX_IO = 8;

    GuestMemory *mem = nullptr;
    IoDevice *io[MAX_IO] = {};
    usize nio = 0;
    u32 vcpu_count = 1;
    u32 cpuid_max_std = 0, cpuid_max_ext = 0;   // the host's highest CPUID leaves, read once

    // Set by the debug-exit device (or a fatal condition): the guest ends.
    bool exit_requested = false;
    u32 exit_code = 0;

    bool add_io(IoDevice *d)
    {
        if (nio == MAX_IO) return false;
        io[nio++] = d;
        return true;
    }
};
