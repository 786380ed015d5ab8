// Keyboard shortcuts (close to OHIF's defaults) and the help overlay listing them.

export const PRESETS = [
  { key: "1", name: "Soft tissue", width: 400, center: 40 },
  { key: "2", name: "Lung", width: 1500, center: -600 },
  { key: "3", name: "Liver", width: 150, center: 90 },
  { key: "4", name: "Bone", width: 2500, center: 480 },
  { key: "5", name: "Brain", width: 80, center: 40 },
];

// [keys as KeyboardEvent.key values, command, description]
export const SHORTCUTS = [
  [["ArrowUp", "ArrowLeft"], "previous", "Previous image"],
  [["ArrowDown", "ArrowRight"], "next", "Next image"],
  [["PageUp"], "back10", "10 images back"],
  [["PageDown"], "forward10", "10 images forward"],
  [["Home"], "first", "First image"],
  [["End"], "last", "Last image"],
  [["["], "previousSeries", "Previous series"],
  [["]"], "nextSeries", "Next series"],
  [["c"], "cine", "Play / pause cine"],
  ...PRESETS.map((p) => [[p.key], `preset${p.key}`, `Window preset: ${p.name} (W ${p.width} / L ${p.center})`]),
  [["w"], "tool:wl", "Tool: window / level (drag)"],
  [["p"], "tool:pan", "Tool: pan"],
  [["z"], "tool:zoom", "Tool: zoom (drag up / down)"],
  [["d"], "tool:length", "Tool: length measurement"],
  [["a"], "tool:angle", "Tool: angle measurement (three clicks)"],
  [["n"], "tool:arrow", "Tool: arrow with a note"],
  [["+", "="], "zoomIn", "Zoom in"],
  [["-"], "zoomOut", "Zoom out"],
  [["f"], "fit", "Fit to window"],
  [["r"], "rotate", "Rotate 90° clockwise"],
  [["R"], "rotateBack", "Rotate 90° counter-clockwise"],
  [["h"], "flipH", "Flip horizontally"],
  [["v"], "flipV", "Flip vertically"],
  [["i"], "invert", "Invert"],
  [[" "], "reset", "Reset view (window, zoom, pan, rotation)"],
  [["t"], "tags", "Show / hide the DICOM tags"],
  [["?"], "help", "Show / hide this help"],
  [["Escape"], "escape", "Cancel the measurement / close"],
];

export const MOUSE = [
  ["Left drag", "the active tool (window / level by default)"],
  ["Middle drag", "pan"],
  ["Right drag", "zoom"],
  ["Wheel", "scroll through the images"],
];

export function commandFor(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return null;
  for (const [keys, command] of SHORTCUTS) if (keys.includes(event.key)) return command;
  return null;
}

const NAMES = { " ": "Space", ArrowUp: "↑", ArrowDown: "↓", ArrowLeft: "←", ArrowRight: "→",
  R: "Shift+R", Escape: "Esc" };

export function helpTable(doc) {
  const table = doc.createElement("table");
  const add = (keys, what) => {
    const row = table.insertRow();
    const k = row.insertCell();
    k.className = "dv-keys";
    k.textContent = keys;
    row.insertCell().textContent = what;
  };
  for (const [keys, , what] of SHORTCUTS) add(keys.map((k) => NAMES[k] || k).join(" / "), what);
  for (const [gesture, what] of MOUSE) add(gesture, what);
  return table;
}
