// The names a configuration gives a guest's disk on Keel's own storage (the
// future `device = "..."` key; not yet read by the configuration parser):
//
//   "nvme0n1"          namespace 1 of NVMe controller 0 (the whole namespace)
//   "nvme0n1p2"        partition 2 of it (GPT entry slot 2, as Linux numbers them)
//   "gpt-name:web"     the one GPT partition named "web", on any namespace
//   "gpt-guid:<guid>"  the GPT partition with that unique GUID (36 characters)
//
// Numbers are decimal without leading zeros; controllers 0..255, namespace IDs
// 1..0xfffffffe, partitions 1..gpt::MAX_ENTRIES. A name is 1..36 printable
// ASCII characters.
#pragma once

#include "kernel/firmware/cmdline.hpp"
#include "kernel/storage/guid.hpp"

enum class DeviceKind : u8 { nvme_namespace, nvme_partition, gpt_name, gpt_guid };

struct DeviceName {
    DeviceKind kind = DeviceKind::nvme_namespace;
    u32 controller = 0;     // nvme_namespace, nvme_partition
    u32 nsid = 0;           // nvme_namespace, nvme_partition
    u32 partition = 0;      // nvme_partition
    StrView name;           // gpt_name: points into the parsed text
    Guid guid;              // gpt_guid
};

// nullptr and `out` filled, or why the text is not a device name ("namespace
// IDs start at 1").
const char *parse_device_name(StrView s, DeviceName &out);
