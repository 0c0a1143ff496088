#!/usr/bin/env python3
"""Checks the Dockerfile without a container engine (none runs here).

- hadolint (the real linter, every level down to style) passes.
- Rules read from the parsed instructions: base images pinned by tag (never latest);
  every `FROM <stage>-${VARIANT}` resolves to a stage for each variant; COPY --from
  names an earlier stage; no ADD; apt-get update + install -y --no-install-recommends +
  rm -rf /var/lib/apt/lists/* in one RUN; WORKDIR absolute; the final stage runs as
  the non-root uid the Kubernetes pods use; exec-form ENTRYPOINT/CMD serving the config
  the Deployment mounts; EXPOSE = the config's ports; -D flags only ones CMakeLists.txt
  defines; .dockerignore keeps build outputs out and what the Dockerfile copies in.
- The build stage installs exactly scripts/setup.sh's packages (it runs the script)
  and builds with scripts/build.sh; the baked model is the one fetch_model.sh fetches
  and the config serves.
- The runtime stage installs the Debian package of every shared library that
  build/bin/ingotd and build/bin/ingot link (ldd, then dpkg -S), when they are built.
"""

import json
import os
import re
import shlex
import unittest
from pathlib import Path

from deploy_util import (BUILD_BIN, DEPLOY, ROOT, main, one, port_of, render, run, tool,
                         yaml)

DOCKERFILE = ROOT / "Dockerfile"
# In every Debian image: libc6 is a dependency of the Essential set (dpkg, coreutils,
# ...), libgcc-s1 one of libc6.
IN_EVERY_DEBIAN_IMAGE = {"libc6", "libgcc-s1"}
RUN_AS_USER = 10001


def parse_dockerfile(text):
    """[(instruction, arguments, flags, line)] with continuations joined, comments and
    parser directives dropped. `# hadolint ignore=` pragmas are kept for hadolint only."""
    instructions = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # comment lines inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        flags = {}
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, _, value = flag[2:].partition("=")
            flags[key] = value
            rest = rest.strip()
        instructions.append((word.upper(), rest, flags, start))
    return instructions


class Stage:
    def __init__(self, base, name, line):
        self.base, self.name, self.line = base, name, line
        self.instructions = []


def stages_of(instructions):
    stages, global_args = [], {}
    for word, args, flags, line in instructions:
        if word == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name, line))
        elif not stages:
            if word == "ARG":
                key, _, value = args.partition("=")
                global_args[key] = value
        else:
            stages[-1].instructions.append((word, args, flags, line))
    return stages, global_args


def setup_packages():
    """The PACKAGES array of scripts/setup.sh, as bash sees it."""
    script = ("set -e; eval \"$(sed -n '/^PACKAGES=(/,/^)/p' scripts/setup.sh)\"; "
              "printf '%s\\n' \"${PACKAGES[@]}\"")
    result = run(["bash", "-c", script], cwd=ROOT)
    if result.returncode != 0 or not result.stdout.strip():
        raise AssertionError(f"cannot read PACKAGES from scripts/setup.sh: {result.stderr}")
    return set(result.stdout.split())


def apt_installs(run_args):
    """Packages named by `apt-get install` in one RUN's shell text."""
    packages = set()
    for command in re.split(r"&&|;|\|\|", run_args):
        words = shlex.split(command.strip(), comments=False) if command.strip() else []
        if len(words) >= 2 and words[0] == "apt-get" and "install" in words:
            packages |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return packages


def linked_packages(binaries):
    """{package: [libraries]} for the shared libraries the binaries link; raises if ldd
    finds a library missing or dpkg knows no package for one."""
    libraries, problems = set(), []
    for binary in binaries:
        out = run(["ldd", str(binary)])
        if out.returncode != 0:
            raise AssertionError(f"ldd {binary}: {out.stderr}")
        for line in out.stdout.splitlines():
            if "not found" in line:
                problems.append(f"{binary.name}: {line.strip()}")
            elif m := (re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)", line)):
                # libtorch and the CUDA runtime it loads come from the torch wheel in
                # .venv-torch, not from Debian: the cuda image copies them into
                # /opt/ingot/lib (test_cuda_image_ships_the_torch_wheels_libraries);
                # the cpu image is built without the torch backend.
                if "/.venv-torch/" not in m.group(1):
                    libraries.add(m.group(1))
    # dpkg may know a file by its link target, and (usrmerge) as /lib/... or /usr/lib/...
    candidates = {}
    for lib in libraries:
        names = [lib, os.path.realpath(lib)]
        names += [n[4:] if n.startswith("/usr/") else "/usr" + n for n in names]
        candidates[lib] = names
    owners = {}
    listing = run(["dpkg", "-S", *sorted({n for ns in candidates.values() for n in ns})])
    for line in listing.stdout.splitlines():
        package, sep, path = line.partition(": ")
        if sep:
            owners[path.strip()] = package.split(",")[0].split(":")[0].strip()
    packages = {}
    for lib, names in sorted(candidates.items()):
        owner = next((owners[n] for n in names if n in owners), None)
        if owner is None:
            problems.append(f"no Debian package owns {lib}")
        else:
            packages.setdefault(owner, []).append(lib)
    if problems:
        raise AssertionError("\n".join(problems))
    return packages


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = DOCKERFILE.read_text()
        cls.instructions = parse_dockerfile(cls.text)
        cls.stages, cls.global_args = stages_of(cls.instructions)
        cls.by_name = {s.name: s for s in cls.stages if s.name}
        cls.config = yaml.safe_load((DEPLOY / "base" / "ingotd.yaml").read_text())

    def variants(self):
        """Values of VARIANT: the suffixes shared by build-* and runtime-* stages."""
        build = {n[len("build-"):] for n in self.by_name if n.startswith("build-")}
        runtime = {n[len("runtime-"):] for n in self.by_name if n.startswith("runtime-")}
        self.assertEqual(build, runtime, "every VARIANT needs a build-* and a runtime-* stage")
        self.assertIn(self.global_args.get("VARIANT"), build, "VARIANT's default has no stage")
        return build

    def resolve(self, base, variant):
        return base.replace("${VARIANT}", variant).replace("$VARIANT", variant)

    def chain(self, stage, variant):
        """The stages `stage` builds on, itself first."""
        out = [stage]
        while True:
            base = self.resolve(out[-1].base, variant)
            if base not in self.by_name:
                return out
            out.append(self.by_name[base])

    def test_hadolint(self):
        result = run([tool("hadolint"), "--failure-threshold", "style", "--no-color",
                      str(DOCKERFILE)])
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_base_images_are_pinned(self):
        variants = self.variants()
        for i, stage in enumerate(self.stages):
            for v in variants:
                base = self.resolve(stage.base, v)
                if base in self.by_name:
                    self.assertLess(self.stages.index(self.by_name[base]), i, base)
                    continue
                self.assertNotIn("$", base, f"line {stage.line}: {stage.base} resolves to no "
                                 f"stage for VARIANT={v}")
                image, _, tag = base.rpartition(":")
                self.assertTrue(image and "/" not in tag and tag,
                                f"line {stage.line}: {base} has no tag")
                self.assertNotEqual(tag, "latest", f"line {stage.line}")
                self.assertRegex(tag, r"\d", f"line {stage.line}: {base}: pin a version")
        # Debian 12 for both the build and the runtime (the packages are Debian 12's).
        debian = {s.name: s.base for s in self.stages if s.base.startswith("debian:")}
        for name, base in debian.items():
            self.assertRegex(base, r"^debian:12(\.\d+)?(-slim)?$", name)

    def test_instruction_rules(self):
        names_so_far = set()
        for i, stage in enumerate(self.stages):
            for word, args, flags, line in stage.instructions:
                where = f"Dockerfile:{line}"
                self.assertNotEqual(word, "ADD", f"{where}: use COPY for local files")
                if word == "COPY" and "from" in flags:
                    src = flags["from"]
                    self.assertTrue(src in names_so_far or
                                    (src.isdigit() and int(src) < i),
                                    f"{where}: COPY --from={src} is no earlier stage")
                if word == "WORKDIR":
                    self.assertTrue(args.startswith("/"), f"{where}: WORKDIR {args} not absolute")
                if word == "RUN" and "apt-get install" in args:
                    self.assertIn("apt-get update", args, f"{where}: update in the same RUN")
                    self.assertRegex(args, r"apt-get install[^&;]*\s-y\b", where)
                    self.assertIn("--no-install-recommends", args, where)
                if word == "RUN" and ("apt-get update" in args or "setup.sh" in args):
                    self.assertIn("rm -rf /var/lib/apt/lists/*", args,
                                  f"{where}: drop the apt lists in the layer that made them")
                if word in ("ENTRYPOINT", "CMD"):
                    json.loads(args)  # exec form: signals reach ingotd, no shell between
                if word == "RUN":
                    for flag in re.findall(r"-D([A-Za-z_][A-Za-z0-9_]*)=", args):
                        self.assertTrue(flag.startswith("CMAKE_") or re.search(
                            rf"option\(\s*{flag}\b", (ROOT / "CMakeLists.txt").read_text()),
                            f"{where}: -D{flag} is not an option of CMakeLists.txt")
            if stage.name:
                names_so_far.add(stage.name)

    def test_final_stage_runs_ingotd_as_the_pods_user(self):
        final = self.stages[-1]
        words = {w: a for w, a, _, _ in final.instructions}
        user = words.get("USER", "")
        self.assertTrue(user, "the final stage sets no USER")
        uid = user.split(":")[0]
        self.assertEqual(uid, str(RUN_AS_USER), "USER must be the numeric uid the pods use")
        deployment = one(render("base"), "Deployment", "ingotd")
        self.assertEqual(deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
                         RUN_AS_USER)
        # The default command serves the config the Deployment mounts over it.
        entry = json.loads(words["ENTRYPOINT"])
        cmd = json.loads(words["CMD"])
        self.assertEqual(entry, ["/usr/local/bin/ingotd"])
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(cmd, container["args"])
        self.assertTrue("install -D -m 0644 deploy/base/ingotd.yaml /out" + cmd[1] in self.text,
                        f"the image does not install deploy/base/ingotd.yaml as {cmd[1]}")
        # useradd in the runtime chain creates that uid.
        runs = " ".join(a for s in self.chain(final, self.global_args["VARIANT"])
                        for w, a, _, _ in s.instructions if w == "RUN")
        self.assertRegex(runs, rf"useradd\b[^&]*--uid {RUN_AS_USER}\b")

    def test_exposed_ports_are_the_configs(self):
        exposed = set()
        for word, args, _, _ in self.stages[-1].instructions:
            if word == "EXPOSE":
                exposed |= {int(p.split("/")[0]) for p in args.split()}
        self.assertEqual(exposed, {port_of(self.config["listen"])[1],
                                   port_of(self.config["metrics_listen"])[1]})

    def test_build_stage_runs_setup_and_build_scripts(self):
        packages = setup_packages()
        for variant in self.variants():
            build = self.by_name["build"]
            chain = self.chain(build, variant)
            seq = [(w, a) for s in reversed(chain) for w, a, _, _ in s.instructions]
            copy_setup = next((i for i, (w, a) in enumerate(seq)
                               if w == "COPY" and "scripts/setup.sh" in a.split()[0]), None)
            run_setup = next((i for i, (w, a) in enumerate(seq)
                              if w == "RUN" and re.search(r"scripts/setup\.sh --no-model\b", a)),
                             None)
            copy_all = next((i for i, (w, a) in enumerate(seq)
                             if w == "COPY" and a.split()[0] == "."), None)
            run_build = next((i for i, (w, a) in enumerate(seq)
                              if w == "RUN" and "scripts/build.sh ingotd ingot" in a), None)
            self.assertIsNotNone(run_setup, f"{variant}: build stage does not run setup.sh")
            self.assertIsNotNone(run_build, f"{variant}: build stage does not run build.sh")
            self.assertTrue(copy_setup is not None and copy_setup < run_setup)
            self.assertTrue(copy_all is not None and run_setup < copy_all < run_build,
                            "setup.sh before the source is copied (layer cache), build after")
            # Any other apt-get install in the build chain may only repeat setup.sh's list.
            extra = set()
            for w, a in seq:
                if w == "RUN":
                    extra |= apt_installs(a)
            self.assertEqual(sorted(extra - packages), [],
                             f"{variant}: build packages outside scripts/setup.sh")

    def test_cuda_image_ships_the_torch_wheels_libraries(self):
        # cpu: no torch backend (nothing from the wheel to ship); cuda: the backend with
        # its CUDA half, and the wheel's libraries beside the binary.
        cpu = self.by_name["build-cpu"]
        cuda = self.by_name["build-cuda"]
        env = lambda stage: " ".join(a for w, a, _, _ in stage.instructions if w == "ENV")
        self.assertIn("-DINGOT_TORCH=OFF", env(cpu))
        self.assertIn("-DINGOT_CUDA=ON", env(cuda))
        self.assertIn("INGOT_SETUP_TORCH=full", env(cuda))
        self.assertIn("site-packages/torch/lib/*.so* /out/opt/ingot/lib/", self.text)
        self.assertIn("site-packages/nvidia/*/lib/*.so* /out/opt/ingot/lib/", self.text)
        runtime = self.by_name["runtime-cuda"]
        self.assertIn("LD_LIBRARY_PATH=/opt/ingot/lib", " ".join(a for w, a, _, _ in runtime.instructions))

    def test_baked_model_is_the_default_model(self):
        fetch = (ROOT / "scripts" / "fetch_model.sh").read_text()
        model = re.search(r"^MODEL=models/(\S+)$", fetch, re.M).group(1)
        self.assertIn(f"cp models/{model} /out/opt/ingot/models/", self.text)
        sources = [m["source"].rsplit("/", 1)[1] for m in self.config["models"]]
        self.assertIn(model, sources, "the config does not serve the model the image bakes")
        self.assertIn("/opt/ingot/models/", " ".join(
            one(render("base"), "Deployment", "ingotd")["spec"]["template"]["spec"]
            ["initContainers"][0]["command"]))

    def test_dockerignore(self):
        ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
                   if l.strip() and not l.startswith("#")]
        for needed in (".git", "build*/", ".venv*/", "models/"):
            self.assertIn(needed, ignored)
        copied = set()
        for stage in self.stages:
            for w, a, flags, _ in stage.instructions:
                if w == "COPY" and "from" not in flags:
                    copied |= set(json.loads(a)[:-1] if a.startswith("[") else a.split()[:-1])
        copied.add("deploy/base/ingotd.yaml")  # installed from the context by the build
        for path in copied:
            for pattern in ignored:
                p = pattern.rstrip("/").replace("*", "")
                self.assertFalse(path != "." and (path == p or path.startswith(p + "/")),
                                 f".dockerignore {pattern} drops {path}, which is copied")

    def test_runtime_installs_what_the_binaries_link(self):
        binaries = [BUILD_BIN / "ingotd", BUILD_BIN / "ingot"]
        if not all(b.exists() for b in binaries):
            self.skipTest(f"{BUILD_BIN}/ingotd and ingot are not built")
        if run(["dpkg", "--version"]).returncode != 0:
            self.skipTest("no dpkg on this machine")
        linked = linked_packages(binaries)
        runtime = self.by_name["runtime-cpu"]
        installed = set()
        for w, a, _, _ in runtime.instructions:
            if w == "RUN":
                installed |= apt_installs(a)
        needed = set(linked) - IN_EVERY_DEBIAN_IMAGE
        missing = {p: linked[p] for p in sorted(needed - installed)}
        self.assertEqual(missing, {}, "runtime-cpu lacks the packages of these libraries")
        print(f"\nruntime packages from ldd + dpkg -S: {', '.join(sorted(needed))}; "
              f"installed beyond them: {', '.join(sorted(installed - needed)) or 'none'}")
        # Every runtime package exists in the Debian 12 archive this machine knows (or
        # is installed here): one `apt-cache policy` for all.
        policy = run(["apt-cache", "policy", *sorted(installed)]).stdout
        known = {m.group(1) for m in re.finditer(
            r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (?!\(none\))", policy, re.M)}
        unknown = sorted(installed - known)
        if unknown and not list(Path("/var/lib/apt/lists").glob("*Packages*")):
            print(f"apt has no package lists (apt-get update never ran): cannot look up "
                  f"{', '.join(unknown)}")
        else:
            self.assertEqual(unknown, [], "runtime packages not in the Debian archive")

if __name__ == "__main__":
    main()
