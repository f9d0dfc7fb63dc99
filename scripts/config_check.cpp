// keel-config-check: Keel's own configuration parser on the host, run by
// scripts/mkimage before it packs an appliance. Built from the kernel's sources
// (kernel/guest/config.cpp: parse_config, log_config_error), so it refuses
// exactly what Keel refuses at boot and says so with Keel's own line.
//
//   keel-config-check [--list | --list-devices] [--no-check] CONFIG
//
// Exit 0 when Keel would accept CONFIG and every file it names (kernels,
// initrds, modules, disk images; paths relative to CONFIG's folder) is there;
// 1 when not, with one message per problem on stderr; 2 on bad usage.
// A host PCI function that Keel will not give a guest (find_pci_conflicts: it is
// the management_nic or an sriov PF, or named twice) is a warning on stderr naming both lines,
// not a refusal: Keel is to refuse only that guest at boot and start the others. The
// warnings are not repeated by --list-devices (scripts/mkimage runs --list first).
//   --list      print the files CONFIG names, as written, once each, one per line
//               (the files scripts/mkimage packs; a disk with `device` is not one)
//   --list-devices
//               print each disk with `device`, in configuration order, one per line:
//               DEVICE<TAB>FILE<TAB>LINE (FILE as written, empty when the disk has
//               none; LINE its [[guest.disk]] header); its FILE is checked like a
//               packed disk image's (there, a regular file, a non-zero multiple of
//               512 bytes). This is what `scripts/mkimage --disk-out` provisions.
//   --no-check  never refuse (for tests that boot a configuration Keel refuses on
//               purpose): problems are reported as notes, --list prints only the
//               files that exist (a disk image of the wrong size too), and nothing
//               at all when CONFIG does not parse
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernel/firmware/multiboot2.hpp"
#include "kernel/guest/config.hpp"
#include "kernel/lib/console.hpp"

namespace {

const char *const TOOL = "keel-config-check";

struct File {
    std::string path;   // as written in the configuration
    u32 line;           // where it is named first
    std::string what;   // "guest \"web\": kernel", ...
    bool disk;
    bool device = false;   // the file of a disk on a device: checked by --list-devices only
};

std::string str(StrView v) { return std::string(v.p ? v.p : "", v.n); }

void add(std::vector<File> &files, StrView path, u32 line, const std::string &what, bool disk,
         bool device = false)
{
    for (File &f : files)
        if (f.path == str(path) && f.device == device) {
            f.disk |= disk;   // a file named as a disk too must be a disk image
            return;
        }
    files.push_back(File{str(path), line, what, disk, device});
}

int usage()
{
    std::fprintf(stderr, "usage: %s [--list | --list-devices] [--no-check] CONFIG\n", TOOL);
    return 2;
}

} // namespace

int main(int argc, char **argv)
{
    bool list = false, list_devices = false, check = true;
    const char *conf = nullptr;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--list")) list = true;
        else if (!std::strcmp(argv[i], "--list-devices")) list_devices = true;
        else if (!std::strcmp(argv[i], "--no-check")) check = false;
        else if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) return usage(), 0;
        else if (argv[i][0] == '-' || conf) return usage();
        else conf = argv[i];
    }
    if (!conf || (list && list_devices)) return usage();

    std::FILE *f = std::fopen(conf, "rb");
    if (!f) {
        std::fprintf(stderr, "%s: cannot read '%s': %s\n", TOOL, conf, std::strerror(errno));
        return 2;
    }
    std::string text;
    char buf[65536];
    for (usize n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) text.append(buf, n);
    std::fclose(f);

    // Keel's messages go where Keel's console would be: here, stderr.
    console::set_sink([](const char *s, usize n) { std::fwrite(s, 1, n, stderr); });
    const char *note = check ? "" : "note (--no-check): ";

    auto cfg = std::make_unique<KeelConfig>();
    ConfigError err{};
    if (!parse_config(text.data(), text.size(), *cfg, err)) {
        log_config_error(err);
        std::fprintf(stderr, "%s: %s%s: Keel refuses this configuration at boot with the line above\n", TOOL,
                     note, conf);
        return check ? 1 : 0;
    }

    // Passed-through functions Keel will not give: warned about, the exit status unchanged.
    if (!list_devices) {
        PciConflict conflicts[MAX_PCI_CONFLICTS];
        const u32 n = find_pci_conflicts(*cfg, conflicts, MAX_PCI_CONFLICTS);
        for (u32 i = 0; i < n && i < MAX_PCI_CONFLICTS; i++) {
            const PciConflict &x = conflicts[i];
            const GuestConfig &g = cfg->guests[x.guest];
            const PciConfig &p = g.pci[x.pci];
            char dev[PciConfig::TEXT_SIZE];
            format_pci_address(dev, p);
            std::string why;
            switch (x.kind) {
            case PciConflict::Kind::management_nic:
                why = "is Keel's management_nic (line " + std::to_string(x.other_line) + ")";
                break;
            case PciConflict::Kind::sriov_pf:
                why = "is an SR-IOV physical function Keel keeps ([keel] sriov, line " + std::to_string(x.other_line) +
                      ")";
                break;
            case PciConflict::Kind::same_guest:
                why = "is named twice by guest \"" + str(g.name) + "\" (also at line " +
                      std::to_string(x.other_line) + ")";
                break;
            case PciConflict::Kind::other_guest:
                why = "is already given to guest \"" + str(cfg->guests[x.other_guest].name) + "\" (line " +
                      std::to_string(x.other_line) + ")";
                break;
            }
            std::fprintf(stderr, "%s: %s line %u: warning: device %s %s; Keel will refuse guest \"%s\"\n", TOOL, conf,
                         p.line, dev, why.c_str(), str(g.name).c_str());
        }
    }

    std::vector<File> files;
    for (u32 i = 0; i < cfg->guest_count; i++) {
        const GuestConfig &g = cfg->guests[i];
        const std::string who = "guest \"" + str(g.name) + "\": ";
        add(files, g.kernel, g.kernel_line, who + "kernel", false);
        if (!g.initrd.empty()) add(files, g.initrd, g.initrd_line, who + "initrd", false);
        for (u32 k = 0; k < g.module_count; k++) add(files, g.modules[k], g.modules_line, who + "module", false);
        // A disk on a device is not packed (its file, if any, is what mkimage --disk-out
        // provisions, and is checked only when asked to list them).
        for (u32 k = 0; k < g.disk_count; k++) {
            const DiskConfig &d = g.disks[k];
            if (d.device.empty()) add(files, d.file, d.line, who + "disk " + std::to_string(k), true);
            else if (list_devices && !d.file.empty())
                add(files, d.file, d.line, who + "disk " + std::to_string(k) + " (" + str(d.device) + ")", true,
                    true);
        }
    }

    const std::string conf_s = conf;
    const usize slash = conf_s.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : conf_s.substr(0, slash ? slash : 1);
    unsigned problems = 0;
    std::vector<const File *> present;
    for (const File &file : files) {
        const std::string full = file.path[0] == '/' ? file.path : dir + "/" + file.path;
        struct stat st {};
        const char *why = nullptr;
        char size_why[160];
        if (::stat(full.c_str(), &st) != 0) why = "no such file";
        else if (!S_ISREG(st.st_mode)) why = "not a regular file";
        else if (!file.device) present.push_back(&file);   // (packed by --no-check even when its size is wrong)
        if (!why && file.disk && (st.st_size == 0 || st.st_size % 512)) {
            std::snprintf(size_why, sizeof(size_why),
                          "%lld bytes, not a non-zero multiple of 512 (pad it: truncate -s %%512 FILE)",
                          (long long)st.st_size);
            why = size_why;
        }
        if (!why) continue;
        problems++;
        std::fprintf(stderr, "%s: %s%s line %u: %s \"%s\" (%s): %s\n", TOOL, note, conf, file.line,
                     file.what.c_str(), file.path.c_str(), full.c_str(), why);
    }
    // GRUB hands Keel every file as a boot module, and the configuration is one more.
    usize packed = 0;
    for (const File &file : files) packed += !file.device;
    if (packed + 1 > BootInfo::MAX_MODULES) {
        problems++;
        std::fprintf(stderr, "%s: %s%s: %zu files and the configuration make %zu boot modules; Keel takes at most %zu\n",
                     TOOL, note, conf, packed, packed + 1, usize(BootInfo::MAX_MODULES));
    }
    if (problems && check) return 1;
    if (list)
        for (const File *file : present) std::printf("%s\n", file->path.c_str());
    if (list_devices)
        for (u32 i = 0; i < cfg->guest_count; i++)
            for (u32 k = 0; k < cfg->guests[i].disk_count; k++) {
                const DiskConfig &d = cfg->guests[i].disks[k];
                if (!d.device.empty())
                    std::printf("%s\t%s\t%u\n", str(d.device).c_str(), str(d.file).c_str(), d.line);
            }
    return 0;
}
