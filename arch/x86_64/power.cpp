#include "arch/x86_64/power.hpp"

#include "arch/x86_64/insn.hpp"
#include "arch/x86_64/mm.hpp"
#include "arch/x86_64/time.hpp"
#include "kernel/firmware/acpi_s5.hpp"
#include "kernel/lib/console.hpp"

namespace power {
namespace {

bool write_pm1(const Gas &g, u16 value)
{
    if (!g.address) return false;
    if (g.space == Gas::SYSTEM_IO && g.address <= 0xfffe) {
        x86::outw(u16(g.address), value);
        return true;
    }
    if (g.space == Gas::SYSTEM_MEMORY) {
        auto *p = reinterpret_cast<volatile u16 *>(mm::map_mmio(PhysAddr(g.address), 2).raw());
        if (!p) return false;
        *p = value;
        return true;
    }
    return false;
}

} // namespace

void off(const Acpi &acpi)
{
    u8 a = 0, b = 0;
    bool found = false;
    static const char *const tables[] = {"DSDT", "SSDT"};
    for (const char *sig : tables) {
        for (usize n = 0; !found; n++) {
            const AcpiTable *t = acpi.find(sig, n);
            if (!t) break;
            auto *aml = reinterpret_cast<const u8 *>(mm::map_firmware(t->pa, t->length).raw());
            found = aml && acpi_find_s5(aml, t->length, a, b);
        }
    }
    if (!found || !acpi.fadt.present) {
        log_error("cannot power off: no ACPI \\_S5 or FADT");
        return;
    }
    constexpr u16 SLP_EN = 1u << 13;
    bool ok = write_pm1(acpi.fadt.pm1a_cnt(), u16(a << 10 | SLP_EN));
    write_pm1(acpi.fadt.pm1b_cnt(), u16(b << 10 | SLP_EN));
    if (ok) time::delay_us(100000);
    log_error("ACPI soft-off did not take effect");
}

void off_failed(const Acpi &acpi, u16 debug_exit_port, u8 code)
{
    if (debug_exit_port) {
        x86::outb(debug_exit_port, code);
        time::delay_us(100000);
        log_error("debug_exit=0x%x: no debug-exit device there", debug_exit_port);
    }
    off(acpi);
}

} // namespace power
