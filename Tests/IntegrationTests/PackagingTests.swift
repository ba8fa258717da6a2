import CamclassTestSupport
import Foundation
import Testing

/// The unit file (systemd-analyze verify and security score) and the .deb, built here from the
/// debug binaries (the release `make deb` differs only in the binaries: static Swift runtime).
@Suite(.serialized) struct PackagingTests {
    /// Runs a command to completion off the cooperative pool; returns (status, stdout+stderr).
    static func run(_ argv: [String], cwd: String = TestEnv.repoRoot, env: [String: String] = [:]) async throws -> (Int32, String) {
        // A nested make must not inherit the outer `make test`'s flags and jobserver.
        let r = try await runCommand("/usr/bin/env", argv, cwd: cwd, env: env, removing: ["MAKEFLAGS", "MFLAGS", "MAKELEVEL"],
                                     mergeOutput: true, timeoutSeconds: 1200)
        return (r.status, r.stdout)
    }

    @Test func unitVerifiesAndScoresAtMostTwo() async throws {
        let (status, out) = try await Self.run(["bash", "Tests/systemd/check-unit.sh", try DaemonProcess.binary()])
        #expect(status == 0, "\(out)")
        // camclassd.service (5 checks) and the template camclassd@.service (6).
        #expect(out.split(separator: "\n").last == "11 passed, 0 failed", "\(out)")
        print(out)
    }

    @Test func installHonoursPrefixAndDestdir() async throws {
        let dest = TestEnv.tempDir("install")
        defer { try? FileManager.default.removeItem(atPath: dest) }
        let bin = URL(fileURLWithPath: try DaemonProcess.binary()).deletingLastPathComponent().path
        let (status, out) = try await Self.run(["make", "--no-print-directory", "install", "PREFIX=/opt/cc", "DESTDIR=\(dest)", "BIN_DIR=\(bin)"])
        #expect(status == 0, "\(out)")
        let unit = try String(contentsOfFile: dest + "/opt/cc/lib/systemd/system/camclassd.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/opt/cc/bin/camclassd --config /etc/camclassd/camclassd.yaml"))
        let template = try String(contentsOfFile: dest + "/opt/cc/lib/systemd/system/camclassd@.service", encoding: .utf8)
        #expect(template.contains("ExecStart=/opt/cc/bin/camclassd --config /etc/camclassd/%i.yaml --socket /run/camclassd/%i.sock"))
        #expect(template.contains("Documentation=file:/opt/cc/share/doc/camclassd/README.md"), "\(template)")
        let config = try String(contentsOfFile: dest + "/etc/camclassd/camclassd.yaml", encoding: .utf8)
        #expect(config.contains("path: /opt/cc/share/camclassd/models/efficientnet_lite0.model.yaml"))
        for f in ["opt/cc/bin/camclassd", "opt/cc/bin/camclass", "opt/cc/share/camclassd/imagenet1k-labels.txt",
                  "opt/cc/share/camclassd/models.yaml", "opt/cc/share/camclassd/models/efficientnet_lite0.onnx",
                  "opt/cc/lib/systemd/system/camclassd.service.d/openvino.conf",
                  "opt/cc/lib/systemd/system/camclassd@.service.d/openvino.conf"] {
            #expect(FileManager.default.fileExists(atPath: dest + "/" + f), "missing \(f)")
        }
        #expect(config.contains("groups: /opt/cc/share/camclassd/coarse-groups.yaml"), "the groups file where install puts it")
        // The installed config is valid for the installed daemon, and every file it names is installed:
        // checked with its absolute paths moved into the staging root (--check-config checks files).
        let staged = dest + "/etc/camclassd/staged.yaml"
        try config.replacingOccurrences(of: "/opt/cc/", with: dest + "/opt/cc/")
            .replacingOccurrences(of: "/var/log/camclassd/", with: dest + "/").write(toFile: staged, atomically: true, encoding: .utf8)
        let (ok, checked) = try await Self.run([dest + "/opt/cc/bin/camclassd", "--config", staged, "--check-config"])
        #expect(ok == 0, "\(checked)")
        // A second install keeps an existing (edited) config.
        try "# edited\n".write(toFile: dest + "/etc/camclassd/camclassd.yaml", atomically: true, encoding: .utf8)
        _ = try await Self.run(["make", "--no-print-directory", "install", "PREFIX=/opt/cc", "DESTDIR=\(dest)", "BIN_DIR=\(bin)"])
        #expect(try String(contentsOfFile: dest + "/etc/camclassd/camclassd.yaml", encoding: .utf8) == "# edited\n")
    }

    @Test func debBuildsInspectsInstallsAndPurges() async throws {
        let out = TestEnv.tempDir("deb")
        defer { try? FileManager.default.removeItem(atPath: out) }
        let bin = URL(fileURLWithPath: try DaemonProcess.binary()).deletingLastPathComponent().path
        let (status, log) = try await Self.run(["make", "--no-print-directory", "deb-package", "BIN_DIR=\(bin)", "DEB_OUT=\(out)"],
                                               env: ["ALLOW_DYNAMIC_SWIFT": "1", "DEB_COMPRESS": "none", "VERSION": "0.1.0~test"])
        #expect(status == 0, "\(log)")
        let deb = out + "/camclassd_0.1.0~test_\(try await Self.run(["dpkg", "--print-architecture"]).1.trimmingCharacters(in: .whitespacesAndNewlines)).deb"
        #expect(FileManager.default.fileExists(atPath: deb), "\(log)")

        let (_, contents) = try await Self.run(["dpkg-deb", "-c", deb])
        for path in ["./usr/bin/camclassd", "./usr/bin/camclass", "./lib/systemd/system/camclassd.service",
                     "./lib/systemd/system/camclassd.service.d/openvino.conf", "./etc/camclassd/camclassd.yaml",
                     "./lib/systemd/system/camclassd@.service", "./lib/systemd/system/camclassd@.service.d/openvino.conf",
                     "./usr/share/camclassd/imagenet1k-labels.txt", "./usr/share/camclassd/models.yaml",
                     "./usr/share/camclassd/models/efficientnet_lite0.model.yaml", "./usr/share/doc/camclassd/README.md"] {
            #expect(contents.contains(" " + path + "\n") || contents.hasSuffix(" " + path), "\(path) not in the package:\n\(contents)")
        }
        #expect(contents.contains("root/root"), "files owned by root")
        let (_, info) = try await Self.run(["dpkg-deb", "-I", deb])
        #expect(info.contains("Package: camclassd"))
        #expect(info.contains("Depends:") && info.contains("adduser") && info.contains("libturbojpeg0") && info.contains("libyuv0"), "\(info)")
        for script in ["postinst", "prerm", "postrm", "conffiles"] { #expect(info.contains(script), "no \(script):\n\(info)") }
        let (_, field) = try await Self.run(["dpkg-deb", "-f", deb, "Package"])
        #expect(field.trimmingCharacters(in: .whitespacesAndNewlines) == "camclassd")
        let (_, cf) = try await Self.run(["sh", "-c", "dpkg-deb --ctrl-tarfile '\(deb)' | tar -xO ./conffiles"])
        #expect(Set(cf.split(separator: "\n").map(String.init)) == ["/etc/camclassd/camclassd.yaml", "/etc/camclassd/mqtt.yaml"], "\(cf)")

        // Install into a scratch root (maintainer scripts run chrootless with DPKG_ROOT set: no user
        // is created, nothing is started, the unit is enabled inside the root), then purge.
        let root = out + "/root-install"
        for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
            try FileManager.default.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true)
        }
        FileManager.default.createFile(atPath: root + "/var/lib/dpkg/status", contents: nil)
        let dpkg = ["dpkg", "--root=\(root)", "--force-script-chrootless", "--force-depends"]
        let (installed, ilog) = try await Self.run(dpkg + ["-i", deb])
        #expect(installed == 0, "\(ilog)")
        #expect(FileManager.default.isExecutableFile(atPath: root + "/usr/bin/camclassd"))
        // The link is absolute inside the root (dangling seen from here): read it, don't follow it.
        let wants = root + "/etc/systemd/system/multi-user.target.wants/camclassd.service"
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: wants)) == "/lib/systemd/system/camclassd.service",
                "postinst enables the unit: \(ilog)")
        let (_, st) = try await Self.run(["dpkg", "--root=\(root)", "-s", "camclassd"])
        #expect(st.contains("Status: install ok installed"), "\(st)")
        // The installed unit (with its drop-in) is what the score check expects.
        let (_, sec) = try await Self.run(["systemd-analyze", "security", "--offline=true", "--root=\(root)", "camclassd.service"])
        #expect(sec.contains("Overall exposure level for camclassd.service: 0."), "\(sec)")

        let (purged, plog) = try await Self.run(dpkg + ["--purge", "camclassd"])
        #expect(purged == 0, "\(plog)")
        #expect(!FileManager.default.fileExists(atPath: root + "/usr/bin/camclassd"))
        #expect(!FileManager.default.fileExists(atPath: root + "/etc/camclassd/camclassd.yaml"), "purge removes the conffile")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: wants)) == nil, "purge removes the enablement")
    }

    @Test func maintainerScriptsParse() async throws {
        for s in ["postinst", "prerm", "postrm"] {
            let (status, out) = try await Self.run(["sh", "-n", "packaging/deb/\(s)"])
            #expect(status == 0, "\(s): \(out)")
        }
    }
}
