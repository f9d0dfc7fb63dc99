// A guest's 16550 UART (transmit side): lines go to Keel's console as
// "[NAME] text". Receive is idle: the guest reads no input.
#pragma once

#include "guest_platform.hpp"

class UartModel final : public IoDevice {
public:
    using LineSink = void (*)(void *ctx, const char *line, usize n);

    UartModel(u16 base, LineSink sink, void *ctx) : base_(base), sink_(sink), ctx_(ctx) {}
    bool io(u16 port, u8 size, bool in, u32 &value) override;
    void flush();   // emit a partial line (the guest ended mid-line)

private:
    void put(char c);

    u16 base_;
    LineSink sink_;
    void *ctx_;
    u8 ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, dll_ = 1, dlm_ = 0;
    char line_[160];
    usize len_ = 0;
};

// QEMU-style debug exit: a 32-bit write of v ends the guest with code v.
class DebugExitModel final : public IoDevice {
public:
    DebugExitModel(u16 port, GuestPlatform &p) : port_(port), p_(p) {}
    bool io(u16 port, u8 size, bool in, u32 &value) override;

private:
    u16 port_;
    GuestPlatform &p_;
};
