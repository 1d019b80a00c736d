#!/usr/bin/python3
"""check-man-coverage: the man pages document every config key and option.

dlqd.conf(5) documents every key of every section.
The keys are read from where they are defined: the parser's key table
(src/common/config_keys.c, cross-checked against the key_id enum of
config_keys.h so a table this script cannot read fails loudly instead of
passing with fewer keys), the keys that need a restart (config.c,
config_restart_key_changed()), and the shipped config/dlqd.conf. In
docs/man/dlqd.conf.5.scd each key must be an entry "*key* = ..." under the
heading "# [section] SECTION", whose text gives "Type:", "Default:" and
"Reload:", the latter saying "restart" exactly for the restart keys. An entry
for a key the parser does not know fails too (a stale page).

dlqd(8) and dlqctl(8) document every long option of the program's getopt
table (src/dlqd/main.c, src/dlqctl/main.c) as "*--option*", and dlqctl(8)
each command.

    check-man-coverage.py SOURCE_DIR
"""
import re
import sys


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def parser_keys(src):
    """{(section, key)} from the parser's table, checked against its enum."""
    table = read(f"{src}/src/common/config_keys.c")
    header = read(f"{src}/src/common/config_keys.h")
    sections = dict(re.findall(r'\[SEC_(\w+)\]\s*=\s*"(\w+)"', table))
    keys = re.findall(r'KEY\(\s*K_\w+\s*,\s*SEC_(\w+)\s*,\s*"(\w+)"', table)
    enum = re.search(r"enum key_id \{(.*?)_K_MAX", header, re.S)
    n_enum = len(re.findall(r"\bK_\w+\s*,", enum.group(1))) if enum else -1
    if not keys or len(keys) != n_enum:
        sys.exit(f"check-man-coverage: read {len(keys)} KEY() entries in config_keys.c but "
                 f"the key_id enum has {n_enum}: update this script's patterns")
    missing = {sec for sec, _ in keys} - sections.keys()
    if missing:
        sys.exit(f"check-man-coverage: no section name for SEC_{', SEC_'.join(sorted(missing))}")
    return {(sections[sec], name) for sec, name in keys}


def restart_keys(src):
    body = re.search(r"config_restart_key_changed\(.*?\n\}", read(f"{src}/src/common/config.c"),
                     re.S)
    keys = set(re.findall(r'"\[(\w+)\] (\w+)"', body.group(0))) if body else set()
    if not keys:
        sys.exit("check-man-coverage: found no restart keys in config_restart_key_changed()")
    return keys


def sample_keys(src):
    """{(section, key)} set in config/dlqd.conf."""
    keys, section = set(), None
    for line in read(f"{src}/config/dlqd.conf").splitlines():
        line = line.strip()
        if not line or line[0] in ";#":
            continue
        m = re.match(r"\[(\w+)\]", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"(\w+)\s*=", line)
        if m:
            keys.add((section, m.group(1)))
    return keys


def page_entries(src):
    """{(section, key): entry text} from the man page source, and the keys
    that have more than one entry."""
    entries, duplicates, section, current = {}, [], None, None
    for line in read(f"{src}/docs/man/dlqd.conf.5.scd").splitlines():
        if line.startswith("#"):
            m = re.match(r"# \[(\w+)\] SECTION$", line)
            section, current = (m.group(1) if m else None), None
            continue
        m = re.match(r"\*(\w+)\* =", line)
        if m and section:
            current = (section, m.group(1))
            if current in entries:
                duplicates.append(current)
            entries[current] = ""
        elif current and line and not line.startswith("\t"):
            current = None  # text of the section, after its entries
        if current:
            entries[current] += line.replace("*", "") + "\n"
    return entries, duplicates


def option_errors(src):
    """Long options (and dlqctl's commands) missing from their page."""
    errors = []
    for prog in ("dlqd", "dlqctl"):
        code = read(f"{src}/src/{prog}/main.c")
        page = read(f"{src}/docs/man/{prog}.8.scd")
        table = re.search(r"struct option opts\[\] = \{(.*?)\n\s*\};", code, re.S)
        options = re.findall(r'\{\s*"([\w-]+)"', table.group(1)) if table else []
        if not options:
            sys.exit(f"check-man-coverage: found no getopt table in src/{prog}/main.c")
        errors += [f"--{o} of {prog} is not documented in docs/man/{prog}.8.scd"
                   for o in options if f"*--{o}*" not in page]
        if prog == "dlqctl":
            m = re.search(r"names\[\] = \{([^}]*)\}", code)
            commands = re.findall(r'"(\w+)"', m.group(1)) if m else []
            if not commands:
                sys.exit("check-man-coverage: found no command names in src/dlqctl/main.c")
            errors += [f"dlqctl {c} is not documented in docs/man/dlqctl.8.scd"
                       for c in commands if not re.search(rf"^\*{c}\*", page, re.M)]
    return errors


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    known = parser_keys(src)
    restart = restart_keys(src)
    sample = sample_keys(src)
    entries, duplicates = page_entries(src)
    errors = [f"[{s}] {k} is in config/dlqd.conf but not in the parser's key table"
              for s, k in sorted(sample - known)]
    errors += [f"[{s}] {k} restarts (config.c) but is not in the parser's key table"
               for s, k in sorted(restart - known)]
    for sec, key in sorted(known | sample):
        text = entries.get((sec, key))
        name = f"[{sec}] {key}"
        if text is None:
            errors.append(f"{name} is not documented in docs/man/dlqd.conf.5.scd "
                          f"(an entry '*{key}* = ...' under '# [{sec}] SECTION')")
            continue
        for field in ("Type:", "Default:", "Reload:"):
            if field not in text:
                errors.append(f"{name}: its entry does not say '{field}'")
        reload = re.search(r"Reload:\s*(\w+)", text)
        says_restart = bool(reload) and reload.group(1) == "restart"
        if says_restart != ((sec, key) in restart):
            errors.append(f"{name}: its entry must say 'Reload: restart' "
                          f"{'' if (sec, key) in restart else 'only '}when a change "
                          f"needs a restart (config_restart_key_changed())")
    for sec, key in sorted(set(entries) - known):
        errors.append(f"docs/man/dlqd.conf.5.scd documents [{sec}] {key}, "
                      f"which the parser does not know")
    errors += [f"[{s}] {k} is documented twice" for s, k in duplicates]
    errors += option_errors(src)
    for e in errors:
        print(f"check-man-coverage: {e}")
    if errors:
        return 1
    print(f"check-man-coverage: {len(known)} keys in {len({s for s, _ in known})} sections "
          f"documented, {len(restart)} of them restart-only; every option documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
