//! `kipuka plugins list` and `kipuka plugins inspect`.

use std::{
    fmt::Write as _,
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use crate::plugins::{
    default_sources, explicit_sources, host_abi_version, is_shared_library, load_plugin,
    PluginRegistry, VendorProfile,
};

fn load_registry(plugin_dirs: &[PathBuf]) -> PluginRegistry {
    let sources = if plugin_dirs.is_empty() {
        default_sources()
    } else {
        explicit_sources(plugin_dirs)
    };
    PluginRegistry::load(&sources, &[])
}

fn report_refused(registry: &PluginRegistry) {
    let mut err = std::io::stderr().lock();
    for refused in registry.refused() {
        let _ = writeln!(err, "refused plugin {refused}");
    }
}

fn describe_sources(plugin_dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = if plugin_dirs.is_empty() {
        default_sources()
            .into_iter()
            .map(|s| s.dir.display().to_string())
            .collect()
    } else {
        plugin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect()
    };
    dirs.join(", ")
}

/// `kipuka plugins list`.
pub fn list(plugin_dirs: &[PathBuf], json: bool) -> ExitCode {
    let registry = load_registry(plugin_dirs);
    report_refused(&registry);
    if registry.plugins().is_empty() {
        eprintln!(
            "no kipuka plugins found in {} (this kipuka speaks plugin ABI {})",
            describe_sources(plugin_dirs),
            host_abi_version()
        );
        return ExitCode::FAILURE;
    }
    let out = if json {
        json_text(&registry.plugins())
    } else {
        table(registry.plugins())
    };
    print_out(&out)
}

/// `kipuka plugins inspect NAME|PATH`.
pub fn inspect(target: &str, plugin_dirs: &[PathBuf], json: bool) -> ExitCode {
    let path = Path::new(target);
    let profile = if target.contains('/') || is_shared_library(path) {
        match load_plugin(path) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("refused plugin {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let registry = load_registry(plugin_dirs);
        match registry.get(target) {
            Some(p) => p.clone(),
            None => {
                report_refused(&registry);
                eprintln!(
                    "no plugin named '{target}' in {} (loaded: {})",
                    describe_sources(plugin_dirs),
                    registry.names().join(", ")
                );
                return ExitCode::FAILURE;
            }
        }
    };
    let out = if json {
        json_text(&profile)
    } else {
        details(&profile)
    };
    print_out(&out)
}

fn print_out(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not a failure worth a panic.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    // Serialising plain data into a String cannot fail.
    let mut text = serde_json::to_string_pretty(value).expect("plugin data serialises");
    text.push('\n');
    text
}

fn table(plugins: &[VendorProfile]) -> String {
    let rows: Vec<[String; 7]> = plugins
        .iter()
        .map(|p| {
            let library = match &p.default_library_path {
                Some(lib) if p.default_library_exists => format!("{lib} (present)"),
                Some(lib) => format!("{lib} (absent)"),
                None => "(none for this platform)".to_string(),
            };
            [
                p.name.clone(),
                p.vendor.clone(),
                p.abi_version.clone(),
                library,
                p.max_sessions
                    .map_or_else(|| "unlimited".to_string(), |n| n.to_string()),
                p.mechanisms.len().to_string(),
                p.ml_dsa.summary(),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "VENDOR",
        "ABI",
        "DEFAULT LIBRARY",
        "MAX SESSIONS",
        "MECHANISMS",
        "ML-DSA",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

fn list_or_dash<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items
            .iter()
            .map(T::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn details(p: &VendorProfile) -> String {
    let mut o = String::new();
    let opt = |v: Option<String>, none: &str| v.unwrap_or_else(|| none.to_string());
    let _ = writeln!(o, "name:                 {}", p.name);
    let _ = writeln!(o, "vendor:               {}", p.vendor);
    let _ = writeln!(o, "description:          {}", p.description);
    let _ = writeln!(o, "plugin version:       {}", p.plugin_version);
    let _ = writeln!(
        o,
        "ABI version:          {} (this kipuka: {})",
        p.abi_version,
        host_abi_version()
    );
    let _ = writeln!(o, "file:                 {}", p.path.display());
    let _ = writeln!(o, "library paths:");
    for (os, lib) in &p.library_paths {
        let here = if Some(lib) == p.default_library_path.as_ref() {
            if p.default_library_exists {
                "  (this platform, present)"
            } else {
                "  (this platform, absent)"
            }
        } else {
            ""
        };
        let _ = writeln!(o, "  {os:<8} {lib}{here}");
    }
    let _ = writeln!(
        o,
        "manufacturer IDs:     {}",
        list_or_dash(&p.manufacturer_ids)
    );
    let _ = writeln!(o, "PKCS#11 version:      {}", p.pkcs11_version);
    let _ = writeln!(
        o,
        "C_Initialize flags:   {}",
        list_or_dash(&p.initialize_flags.names())
    );
    let _ = writeln!(
        o,
        "max sessions:         {}",
        opt(p.max_sessions.map(|n| n.to_string()), "unlimited")
    );
    let _ = writeln!(
        o,
        "idle sessions:        {}{}",
        p.idle_sessions.behaviour,
        p.idle_sessions
            .keepalive_secs
            .map(|s| format!(" (keep-alive every {s} s)"))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "login user type:      {}", p.login_user_type);
    let _ = writeln!(o, "RSA-OAEP hashes:      {}", list_or_dash(&p.oaep_hashes));
    let _ = writeln!(
        o,
        "ML-DSA:               native {}{}{}; software fallback {}",
        p.ml_dsa.native,
        p.ml_dsa
            .vendor_mechanism
            .map(|m| {
                let name = p
                    .mechanism(m)
                    .map_or_else(|| m.to_string(), |d| d.name.clone());
                format!(" ({name}, {:#x})", m.0)
            })
            .unwrap_or_default(),
        if p.ml_dsa.firmware_dependent {
            ", firmware-dependent"
        } else {
            ""
        },
        if p.ml_dsa.software_fallback {
            "allowed"
        } else {
            "not allowed"
        }
    );
    let _ = writeln!(
        o,
        "key label limit:      {}",
        opt(
            p.key_label_max_len.map(|n| format!("{n} bytes")),
            "none documented"
        )
    );
    let _ = writeln!(
        o,
        "FIPS 140-3 level:     {}",
        opt(p.fips_140_3_level.map(|n| n.to_string()), "not validated")
    );
    let _ = writeln!(
        o,
        "network HSM:          {}",
        if p.network_hsm { "yes" } else { "no" }
    );
    let _ = writeln!(
        o,
        "key export:           {}",
        if p.non_exportable_by_default {
            "non-exportable by default (CKA_EXTRACTABLE=false)"
        } else {
            "configurable"
        }
    );
    let _ = writeln!(o, "environment:");
    if p.env.is_empty() {
        let _ = writeln!(o, "  -");
    }
    for e in &p.env {
        let _ = writeln!(
            o,
            "  {} = {}{}  # {}",
            e.name,
            e.default.as_deref().unwrap_or("(no default)"),
            if e.required { " [required]" } else { "" },
            e.description
        );
    }
    let _ = writeln!(o, "mechanisms ({}):", p.mechanisms.len());
    for m in &p.mechanisms {
        let mut params = Vec::new();
        if !m.key_sizes.is_empty() {
            params.push(format!("bits {}", list_or_dash(&m.key_sizes)));
        }
        if !m.curves.is_empty() {
            params.push(format!("curves {}", list_or_dash(&m.curves)));
        }
        if !m.hashes.is_empty() {
            params.push(format!("hashes {}", list_or_dash(&m.hashes)));
        }
        if !m.parameter_sets.is_empty() {
            params.push(format!("sets {}", list_or_dash(&m.parameter_sets)));
        }
        let _ = writeln!(
            o,
            "  {:#010x}  {:<40} {:<28} {}",
            m.id.0,
            m.name,
            m.operations.names().join(","),
            params.join("; ")
        );
    }
    let _ = writeln!(o, "notes:");
    for n in &p.notes {
        let _ = writeln!(o, "  - {n}");
    }
    o
}
