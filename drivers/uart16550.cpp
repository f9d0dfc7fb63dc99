#include "drivers/uart16550.hpp"

#include "arch/x86_64/insn.hpp"

void Uart16550::out(Reg r, u8 v) { x86::outb(u16(port_ + u16(r)), v); }
u8 Uart16550::in(Reg r) { return x86::inb(u16(port_ + u16(r))); }

bool Uart16550::init(u16 port)
{
    port_ = port;
    // The scratch register proves something is there before we depend on it.
    out(Reg::scr, 0x5a);
    if (in(Reg::scr) != 0x5a) {
        port_ = 0;
        return false;
    }
    out(Reg::ier, 0);        // polled: no interrupts
    out(Reg::lcr, 0x80);     // DLAB
    out(Reg::dll, 1);        // 115200 baud
    out(Reg::dlm, 0);
    out(Reg::lcr, 0x03);     // 8N1
    out(Reg::fcr, 0x07);     // FIFOs on and cleared
    out(Reg::mcr, 0x03);     // DTR, RTS
    return true;
}

void Uart16550::put(char c)
{
    // Bounded wait for the transmitter: a dead UART must not hang Keel.
    for (unsigned i = 0; i < 100000 && !(in(Reg::lsr) & 0x20); i++) x86::pause();
    out(Reg::thr, u8(c));
}

void Uart16550::write(const char *s, usize n)
{
    if (!port_) return;
    for (usize i = 0; i < n; i++) {
        if (s[i] == '\n') put('\r');
        put(s[i]);
    }
}

bool Uart16550::read(u8 &c)
{
    if (!port_ || !(in(Reg::lsr) & 0x01)) return false;   // LSR.DR: data ready
    c = in(Reg::rbr);
    return true;
}
