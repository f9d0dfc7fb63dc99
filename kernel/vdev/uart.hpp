// A guest's 16550 UART (transmit side): lines go to Keel's console as
// "[NAME] text". Receive is idle: the guest reads no input.
#pragma once

#include "kernel/vdev/guest_platform.hpp"

class UartModel final : public IoDevice {
public:
    using LineSink = void (*)(void *ctx, const char *line, usize n);
    // The interrupt line (as gated by MCR.OUT2 on a PC), called when it changes.
    using IrqSink = void (*)(void *ctx, bool level);

    UartModel(u16 base, LineSink sink, void *ctx, IrqSink irq = nullptr) : base_(base), sink_(sink), ctx_(ctx), irq_(irq) {}
    bool io(u16 port, u8 size, bool in, u32 &value) override;
    void flush();   // emit a partial line (the guest ended mid-line)

    bool irq_line() const { return (mcr_ & 0x08) && (ier_ & 0x02) && thre_pending_; }

private:
    void put(char c);
    void update_irq();

    u16 base_;
    LineSink sink_;
    void *ctx_;
    IrqSink irq_;
    u8 ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, dll_ = 1, dlm_ = 0, fcr_ = 0;
    // Transmission is instant, so the holding register is always empty: its interrupt is pending
    // from a write (or enabling it) until the guest reads IIR.
    bool thre_pending_ = false;
    bool irq_level_ = false;
    char line_[160];
    usize len_ = 0;
};

// QEMU-style debug exit (isa-debug-exit): a write of v of any width (OUTB, OUTW, OUTL) ends the
// guest with code v; reads float high.
class DebugExitModel final : public IoDevice {
public:
    DebugExitModel(u16 port, GuestPlatform &p) : port_(port), p_(p) {}
    bool io(u16 port, u8 size, bool in, u32 &value) override;

private:
    u16 port_;
    GuestPlatform &p_;
};
