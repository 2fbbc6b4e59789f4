"""Bad input during a run: each damaged item ends failed or flagged with a reason naming the file;
the other items of the same run are done."""

from __future__ import annotations

from appliance.pipeline.runner import item_id
from appliance.pipeline.stages import list_observations, run_image, run_products


def test_schema_failing_item_xml_fails_its_item_only(archive_root, tmp_path):
    work = tmp_path / "work"
    folders = list_observations(archive_root)[:3]
    summary, _ = run_products(archive_root, work, folders=folders, parallel=1, progress=False)
    assert summary.count("done") == 3, summary.report()
    bad = work / "products" / f"{item_id(folders[0])}.xml"
    bad.write_text(bad.read_text().replace('status="done"', 'status="maybe"', 1))
    isum, _ = run_image(archive_root, work, detectors=("sextractor",), folders=folders[:2], parallel=1,
                        progress=False)
    by = {i.id: i for i in isum.items}
    assert by[folders[0]].status == "failed", by[folders[0]]
    assert str(bad) in by[folders[0]].reason and "does not follow products.xsd" in by[folders[0]].reason
    assert by[folders[1]].status == "done", by[folders[1]]


def test_products_xml_of_the_archive_skips_a_damaged_item(archive_root, tmp_path):
    """A damaged per-item record is redone on resume (failed items are retried) and the archive's
    products.xml is valid again."""
    from appliance.pipeline.products import read_xml

    work = tmp_path / "work"
    folders = list_observations(archive_root)[:2]
    run_products(archive_root, work, folders=folders, parallel=1, progress=False)
    part = work / "products" / f"{item_id(folders[0])}.xml"
    part.write_text("<products>not ours</products>")
    summary, xml = run_products(archive_root, work, folders=folders, parallel=1, progress=False, resume=False)
    assert summary.count("done") == 2 and {o.folder for o in read_xml(xml)} == set(folders)
