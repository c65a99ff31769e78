//! Licence-ops commands: `import wigle`, `import ddex`, `map` and `diff`.

use crate::{
    Cli, DdexArgs, DiffArgs, Exit, MapArgs, WigleArgs, bad_input, load_failed, load_shown,
    print_out, source,
};
use anyhow::{Context, Result};
use chrono::Utc;
use regiongate::DataSource;
use regiongate::decide::Question;
use regiongate::locate::{self};
use regiongate::progress::{Progress, Unit};
use serde_json::json;
use std::path::PathBuf;

pub(crate) fn run_import_wigle(a: &WigleArgs) -> Result<u8, Exit> {
    let mut files = Vec::with_capacity(a.files.len());
    for f in &a.files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", f.display())))?;
        files.push((f.display().to_string(), text));
    }
    let (csv, stats) = locate::wifi::import_wigle(&files).map_err(|e| bad_input(e.into()))?;
    // Written beside the target and renamed, so a watcher never sees half a file.
    let tmp = a.out.with_extension("csv.tmp~");
    std::fs::write(&tmp, csv)
        .and_then(|()| std::fs::rename(&tmp, &a.out))
        .map_err(|e| Exit(1, anyhow::anyhow!("{}: {e}", a.out.display())))?;
    eprintln!(
        "{}: {} access points from {} rows ({} skipped)",
        a.out.display(),
        stats.access_points,
        stats.rows,
        stats.skipped
    );
    Ok(0)
}

/// The message files named: files as given, directories' `*.xml` files in name order.
fn ddex_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| p.display().to_string())?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "xml") && f.is_file())
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

pub(crate) fn run_import_ddex(cli: &Cli, a: &DdexArgs) -> Result<u8, Exit> {
    use regiongate::ddex::{self, DdexError, write};
    let fail = |e: DdexError| {
        if a.json {
            let _ = print_out(&format!("{}\n", json!({"ok": false, "error": e.to_json()})));
        }
        bad_input(e.into())
    };
    let files = ddex_inputs(&a.inputs).map_err(bad_input)?;
    if files.is_empty() {
        return Err(bad_input(anyhow::anyhow!("no *.xml message files found")));
    }
    let snap =
        load_shown(&source(&cli.regions), "loading the data", cli.quiet).map_err(load_failed)?;
    let total = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let progress = Progress::new("import ddex", Some(total), Unit::Bytes, cli.quiet);
    // The bar is cleared before an error is printed.
    let fail = |e: DdexError| {
        progress.finish();
        fail(e)
    };
    let mut messages = Vec::with_capacity(files.len());
    for f in &files {
        let name = f.display().to_string();
        let file = std::fs::File::open(f).map_err(|source| {
            fail(DdexError::Io {
                file: name.clone(),
                source,
            })
        })?;
        let read = std::io::BufReader::with_capacity(1 << 16, progress.reader(file));
        let m = ddex::parse_checked(&name, read, &snap.territories, &snap.groups).map_err(fail)?;
        messages.push(m);
    }
    progress.finish();
    let imp = ddex::Import::merge(messages).map_err(fail)?;
    let rendered = write::render(&imp, a.bulk_over);
    if let Err(problems) = write::check(&rendered, &snap.territories, &snap.groups) {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(Exit(
            1,
            anyhow::anyhow!(
                "internal error: the written files would not load: {}",
                list.join("; ")
            ),
        ));
    }
    write::write_dir(&a.out, &rendered.files)
        .map_err(|e| Exit(1, anyhow::anyhow!("{}: {e}", a.out.display())))?;
    let written: Vec<String> = rendered
        .files
        .iter()
        .map(|(n, _)| a.out.join(n).display().to_string())
        .collect();
    if a.json {
        print_out(&format!(
            "{}\n",
            json!({
                "ok": true,
                "out": a.out.display().to_string(),
                "files": written,
                "messages": imp.messages,
                "tracks": rendered.tracks,
                "deals": rendered.deals,
                "dealsets": rendered.dealsets,
                "takedowns": rendered.takedowns,
                "ignored": imp.ignored,
            })
        ))?;
    } else {
        for i in &imp.ignored {
            eprintln!(
                "regiongate: {}: {} (x{}): {}",
                i.file, i.element, i.count, i.reason
            );
        }
        eprintln!(
            "{}: {} message(s), {} deal set(s) ({} takedown(s)), {} deal(s), {} track(s)",
            a.out.display(),
            imp.messages.len(),
            rendered.dealsets,
            rendered.takedowns,
            rendered.deals,
            rendered.tracks
        );
    }
    Ok(0)
}

/// Writes a file beside its target, then renames it into place.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Result<(), Exit> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp~");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Exit(1, anyhow::anyhow!("{}: {e}", path.display())))
}

fn load_world(dir: &Option<PathBuf>) -> Result<regiongate::map::World, Exit> {
    regiongate::map::World::load(&source(dir)).map_err(|e| {
        Exit(
            3,
            anyhow::Error::new(e).context("cannot read the map geometry"),
        )
    })
}

pub(crate) fn run_map(cli: &Cli, a: &MapArgs) -> Result<u8, Exit> {
    use regiongate::map;
    let snap =
        load_shown(&source(&cli.regions), "loading the data", cli.quiet).map_err(load_failed)?;
    let loading = Progress::spinner("loading the map", cli.quiet);
    let world = load_world(&cli.regions);
    loading.finish();
    let world = world?;
    let at = a.at.unwrap_or_else(Utc::now);
    let q = Question {
        track: &a.track,
        use_type: a.use_type,
        tier: a.tier,
    };
    let c = map::track_colouring(&world, &snap, &q, at);
    write_whole(&a.out, map::svg(&world, &c).as_bytes())?;
    let by = |s: map::Shade| {
        c.by_code
            .iter()
            .filter(|(_, (t, _))| *t == s)
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
    };
    if a.json {
        print_out(&format!(
            "{}\n",
            json!({
                "track": a.track, "use": a.use_type.as_str(), "tier": a.tier.as_str(),
                "at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "data_version": snap.version, "out": a.out.display().to_string(),
                "playable": by(map::Shade::Allow), "not_playable": by(map::Shade::Deny),
                "not_in_data": by(map::Shade::NoData),
            })
        ))?;
    } else {
        eprintln!(
            "{}: {} countries playable, {} not",
            a.out.display(),
            by(map::Shade::Allow).len(),
            by(map::Shade::Deny).len()
        );
    }
    Ok(0)
}

pub(crate) fn run_diff(cli: &Cli, a: &DiffArgs) -> Result<u8, Exit> {
    let load = |dir: &PathBuf| {
        load_shown(
            &DataSource::Dir(dir.clone()),
            &format!("loading {}", dir.display()),
            cli.quiet,
        )
        .map_err(load_failed)
    };
    let old = load(&a.old)?;
    let new = load(&a.new)?;
    let progress = Progress::new(
        "diff: selectors",
        Some(regiongate::diff::selector_count(&old, &new)),
        Unit::Items,
        cli.quiet,
    );
    let d =
        regiongate::diff::diff_with_progress(&old, &new, a.at.unwrap_or_else(Utc::now), &|| {
            progress.inc(1)
        });
    progress.finish();
    if let Some(path) = &a.map {
        let world = load_world(&Some(a.new.clone()))?;
        let c = regiongate::map::diff_colouring(&world, &d);
        write_whole(path, regiongate::map::svg(&world, &c).as_bytes())?;
    }
    if a.json {
        print_out(&format!(
            "{}\n",
            serde_json::to_string(&d).map_err(|e| Exit(1, e.into()))?
        ))?;
    } else {
        print_out(&d.to_text(a.limit))?;
    }
    Ok(0)
}
