// The tag panel's rows from DICOM JSON (PS3.18 Annex F): tag, keyword (from
// the dictionary served at dictionary.json, made from pydicom's), VR, value.

const MAX_VALUE = 120;
const MAX_DEPTH = 3;

function shown(element) {
  if (element.BulkDataURI !== undefined) return "(bulk data)";
  if (element.InlineBinary !== undefined) return "(binary)";
  const values = element.Value || [];
  if (element.vr === "SQ") return `${values.length} item${values.length === 1 ? "" : "s"}`;
  const parts = values.map((v) => (v !== null && typeof v === "object"
    ? v.Alphabetic || v.Ideographic || "" : String(v)));
  const joined = parts.join("\\");
  return joined.length > MAX_VALUE ? `${joined.slice(0, MAX_VALUE)}…` : joined;
}

// Rows [tag "(GGGG,EEEE)", keyword, VR, value, depth], sequences expanded.
export function tagRows(ds, keywords, depth = 0, rows = []) {
  for (const tag of Object.keys(ds).sort()) {
    const element = ds[tag];
    const group = tag.slice(0, 4);
    const name = keywords[tag] || (parseInt(group, 16) % 2 ? "(private)" : "");
    rows.push([`(${group},${tag.slice(4)})`, name, element.vr || "", shown(element), depth]);
    if (element.vr === "SQ" && depth < MAX_DEPTH) {
      (element.Value || []).forEach((item, i) => {
        rows.push(["", `Item ${i + 1}`, "", "", depth + 1]);
        tagRows(item, keywords, depth + 1, rows);
      });
    }
  }
  return rows;
}
