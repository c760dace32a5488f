"""The kernel modules a LinuxKit config loads with ``modprobe``.

``lkfirmware sync`` reads them from the ``command:`` of ``onboot`` and ``services``
entries: a ``modprobe`` (or ``/sbin/modprobe``) command array, or ``modprobe`` commands
inside an ``sh -c`` script.  ``init:`` entries are images and never run commands.

Example::

    >>> modules_loaded_by('''
    ... onboot:
    ...   - name: modprobe
    ...     image: linuxkit/modprobe:v1
    ...     command: ["modprobe", "-a", "brcmfmac", "btusb"]
    ...   - name: wifi
    ...     image: alpine
    ...     command: ["sh", "-c", "modprobe iwlwifi 11n_disable=1 && echo ok"]
    ... ''')
    ['brcmfmac', 'btusb', 'iwlwifi']
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence

from lkfirmware.config import YamlNode, parse_yaml

SECTIONS = ("onboot", "services")
"""The config sections whose entries run commands that may load modules."""

SHELLS = frozenset({"sh", "ash", "bash", "dash", "ksh", "mksh", "zsh"})

# kmod's modprobe: options that take a value, and options that load nothing.
_SHORT_WITH_VALUE = frozenset("CdSw")
_LONG_WITH_VALUE = frozenset({"config", "dirname", "set-version", "wait"})
_SHORT_NOT_LOADING = frozenset("rcDRVhnl")
_LONG_NOT_LOADING = frozenset(
    {
        "remove",
        "showconfig",
        "show-config",
        "show-depends",
        "resolve-alias",
        "version",
        "help",
        "dry-run",
        "show",
        "show-modversions",
        "dump-modversions",
        "show-exports",
        "list",
    }
)
_LONG_OPTIONS = (
    _LONG_WITH_VALUE
    | _LONG_NOT_LOADING
    | frozenset(
        {
            "all",
            "force",
            "force-modversion",
            "force-vermagic",
            "first-time",
            "ignore-install",
            "ignore-remove",
            "use-blacklist",
            "syslog",
            "quiet",
            "verbose",
            "remove-dependencies",
            "remove-holders",
        }
    )
)
# Words that may stand before the command itself: shell keywords and wrappers.
_PREFIX_WORDS = frozenset(
    {
        "exec",
        "command",
        "builtin",
        "nohup",
        "time",
        "busybox",
        "if",
        "then",
        "else",
        "elif",
        "do",
        "while",
        "until",
        "!",
        "{",
        "}",
    }
)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_REDIRECT = re.compile(r"(\d*(?:&>>?|>>?\|?|<<?<?|<>|>&|<&))(.*)", re.DOTALL)
_UNKNOWN_NAME = re.compile(r"[$`*?\[\s]")
_MAX_SHELL_DEPTH = 4


def modules_loaded_by(text: str, where: str = "<config>") -> list[str]:
    """The kernel modules that the ``onboot`` and ``services`` commands of a config load.

    Names are returned as written, in first-seen order, without duplicates.  Commands that
    remove (``-r``) or only show (``-n``, ``-c``, ``-D``, ...) load nothing and are skipped,
    and so are names built from shell variables.  The parse is lenient about duplicate keys
    (the seed's sample has two ``files:``); invalid YAML raises ``ConfigError``.
    """
    root = parse_yaml(text, where)
    found: dict[str, None] = {}
    for argv in _commands(root):
        for module in modules_in_command(argv):
            found.setdefault(module, None)
    return list(found)


def _commands(root: YamlNode | None) -> Iterator[list[str]]:
    """The command arrays of every onboot and services entry (duplicate sections too)."""
    if root is None or root.kind != "map":
        return
    for section in SECTIONS:
        for _key, entries in root.pairs_named(section):
            for entry in _items(entries):
                command = entry.get("command") if entry.kind == "map" else None
                if command is not None:
                    yield _argv(command)


def _items(node: YamlNode) -> list[YamlNode]:
    target = node.resolved()
    return [item.resolved() for item in target.items] if target.kind == "seq" else []


def _argv(command: YamlNode) -> list[str]:
    """A command array as strings; a lone string is taken as a shell script."""
    node = command.resolved()
    if node.kind == "scalar":
        return ["sh", "-c", node.value]
    return [text for text in (item.scalar() for item in node.items) if text is not None]


def modules_in_command(argv: Sequence[str], depth: int = 0) -> list[str]:
    """The modules one command loads: a modprobe, or a shell running a script."""
    argv = _without_prefix(argv)
    if not argv:
        return []
    program = argv[0].rsplit("/", 1)[-1]
    if program == "modprobe":
        return modprobe_modules(argv[1:])
    if program in SHELLS and depth < _MAX_SHELL_DEPTH:
        script = _shell_script(argv[1:])
        if script is not None:
            return modules_in_script(script, depth + 1)
    return []


def _without_prefix(argv: Sequence[str]) -> list[str]:
    """Drop shell keywords, wrappers (``exec``, ``busybox``, ``env -i``) and assignments."""
    words = list(argv)
    while words:
        word = words[0]
        if word in _PREFIX_WORDS or _ASSIGNMENT.match(word):
            words.pop(0)
        elif word.rsplit("/", 1)[-1] == "env":
            words = _without_env_options(words[1:])
        else:
            break
    return words


def _without_env_options(words: list[str]) -> list[str]:
    while words and words[0].startswith("-"):
        option = words.pop(0)
        if option in ("-u", "--unset", "-C", "--chdir", "-S") and words:
            words.pop(0)
    return words


def modprobe_modules(args: Sequence[str]) -> list[str]:
    """The modules one ``modprobe`` invocation loads, from its arguments.

    With ``-a``/``--all`` every argument is a module; otherwise the first argument is
    the module and the rest are its parameters.  Options may stand anywhere (getopt
    permutes them); ``--`` ends them.
    """
    load_all = False
    operands: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            operands += rest
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        if arg.startswith("--"):
            option = _long_option(arg)
            if option is None:
                return []  # modprobe stops at an unknown or ambiguous option
            names = {option}
        else:
            option = None
            names = _short_options(arg, rest)
        if names & (_LONG_NOT_LOADING | _SHORT_NOT_LOADING):
            return []
        if names & {"a", "all"}:
            load_all = True
        if option in _LONG_WITH_VALUE and "=" not in arg and rest:
            rest.pop(0)
    chosen = operands if load_all else operands[:1]
    return [name for name in chosen if name and not _UNKNOWN_NAME.search(name)]


def _long_option(arg: str) -> str | None:
    """The full name of a long option, accepting getopt's unique abbreviations;
    None for an unknown or ambiguous one."""
    name = arg[2:].split("=", 1)[0]
    if name in _LONG_OPTIONS:
        return name
    matches = [option for option in _LONG_OPTIONS if option.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def _short_options(arg: str, rest: list[str]) -> set[str]:
    """The letters of a short option cluster; a value-taking letter ends it."""
    letters: set[str] = set()
    for index, letter in enumerate(arg[1:], start=1):
        letters.add(letter)
        if letter in _SHORT_WITH_VALUE:
            if index == len(arg) - 1 and rest:
                rest.pop(0)
            break
    return letters


def _shell_script(args: Sequence[str]) -> str | None:
    """The command string of ``sh [options] -c SCRIPT ...``, or None without ``-c``."""
    saw_c = False
    words = list(args)
    while words:
        word = words.pop(0)
        if word in ("-o", "+o"):
            if words:
                words.pop(0)
        elif word.startswith("--"):
            continue
        elif word[:1] in ("-", "+") and len(word) > 1:
            saw_c = saw_c or "c" in word[1:]
        else:
            return word if saw_c else None
    return None


def modules_in_script(script: str, depth: int = 1) -> list[str]:
    """The modules a shell script loads: each simple command split by ``shlex``."""
    found: list[str] = []
    for command in shell_commands(script):
        try:
            words = shlex.split(command, comments=True, posix=True)
        except ValueError:
            continue
        found += modules_in_command(_without_redirections(words), depth)
    return found


def shell_commands(script: str) -> list[str]:
    """Split a script into simple commands at ``;``, ``&&``, ``||``, ``|``, ``&``,
    parentheses and newlines outside quotes, dropping comments."""
    script = re.sub(r"\\\r?\n", " ", script)
    splitter = _CommandSplitter(script)
    return [command for command in splitter.commands() if command.strip()]


class _CommandSplitter:
    """A small quote-aware scanner over one shell script."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.index = 0

    def commands(self) -> Iterator[str]:
        current: list[str] = []
        while self.index < len(self.script):
            char = self.script[self.index]
            if char in "'\"":
                current.append(self._quoted(char))
                continue
            if char == "\\":
                current.append(self.script[self.index : self.index + 2])
                self.index += 2
                continue
            if char == "#" and (not current or current[-1][-1:] in (" ", "\t")):
                self._skip_comment()
                continue
            if self._is_separator(char, current):
                yield "".join(current)
                current = []
            else:
                current.append(char)
            self.index += 1
        yield "".join(current)

    def _quoted(self, quote: str) -> str:
        start = self.index
        self.index += 1
        while self.index < len(self.script) and self.script[self.index] != quote:
            self.index += 2 if quote == '"' and self.script[self.index] == "\\" else 1
        self.index += 1
        return self.script[start : self.index]

    def _skip_comment(self) -> None:
        while self.index < len(self.script) and self.script[self.index] not in "\r\n":
            self.index += 1

    def _is_separator(self, char: str, current: list[str]) -> bool:
        if char in ";\r\n()|":
            return True
        if char != "&":
            return False
        following = self.script[self.index + 1 : self.index + 2]
        previous = current[-1][-1:] if current else ""
        return previous not in ("<", ">") and following != ">"


def _without_redirections(words: Sequence[str]) -> list[str]:
    """Drop ``> file``, ``2>&1``, ``</dev/null`` and their targets from a command's words."""
    kept: list[str] = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        position = _redirect_position(word)
        if position is None:
            kept.append(word)
            continue
        operator = _REDIRECT.match(word[position:])
        assert operator is not None
        skip_next = not operator.group(2)
        if word[:position]:
            kept.append(word[:position])
    return kept


def _redirect_position(word: str) -> int | None:
    match = re.search(r"\d*(?:&>|[<>])", word)
    return match.start() if match else None
