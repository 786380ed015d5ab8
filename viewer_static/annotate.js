// Measurements and annotations: their geometry in millimetres and how they
// are drawn. Points are image coordinates (column, row) of the stored frame,
// where pixel (0, 0) covers [0, 1) x [0, 1).

export const POINTS = { length: 2, angle: 3, arrow: 2, text: 1 };

// Distance in mm between two image points; `spacing` is [row, column] spacing
// (PixelSpacing order, PS3.3 C.7.6.2.1.1). Null without spacing.
export function lengthMm(a, b, spacing) {
  if (!spacing) return null;
  const dx = (b[0] - a[0]) * spacing[1];
  const dy = (b[1] - a[1]) * spacing[0];
  return Math.hypot(dx, dy);
}

export function lengthPx(a, b) {
  return Math.hypot(b[0] - a[0], b[1] - a[1]);
}

// The angle at `vertex` in degrees, in physical space when spacing is known.
export function angleDeg(a, vertex, c, spacing) {
  const sx = spacing ? spacing[1] : 1;
  const sy = spacing ? spacing[0] : 1;
  const ux = (a[0] - vertex[0]) * sx;
  const uy = (a[1] - vertex[1]) * sy;
  const vx = (c[0] - vertex[0]) * sx;
  const vy = (c[1] - vertex[1]) * sy;
  const cos = (ux * vx + uy * vy) / (Math.hypot(ux, uy) * Math.hypot(vx, vy));
  return (Math.acos(Math.min(1, Math.max(-1, cos))) * 180) / Math.PI;
}

// The label of an annotation: "12.3 mm", "45.0°", or its text.
export function label(a, spacing) {
  if (a.kind === "length") {
    const mm = lengthMm(a.points[0], a.points[1], spacing);
    return mm === null ? `${lengthPx(a.points[0], a.points[1]).toFixed(1)} px`
      : `${mm.toFixed(1)} mm`;
  }
  if (a.kind === "angle") {
    if (a.points.length < 3) return "";
    return `${angleDeg(a.points[0], a.points[1], a.points[2], spacing).toFixed(1)}°`;
  }
  return a.text || "";
}

// Draw `list` on a 2D context whose transform is the device pixel transform;
// `toScreen` maps image points to device pixels.
export function drawAnnotations(ctx, list, toScreen, spacing, scale) {
  ctx.save();
  ctx.lineWidth = 1.5 * scale;
  ctx.font = `${Math.round(13 * scale)}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  for (const a of list) {
    const colour = a.pending ? "#ffd54f" : a.mine === false ? "#4fc3f7" : "#76ff03";
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    const p = a.points.map(toScreen);
    ctx.beginPath();
    ctx.moveTo(p[0].x, p[0].y);
    for (const q of p.slice(1)) ctx.lineTo(q.x, q.y);
    ctx.stroke();
    for (const q of p) {
      ctx.beginPath();
      ctx.arc(q.x, q.y, 2.5 * scale, 0, 2 * Math.PI);
      ctx.fill();
    }
    if (a.kind === "arrow" && p.length === 2) arrowHead(ctx, p[1], p[0], scale);
    let text = label(a, spacing);
    if (a.author && a.mine === false) text = `${text} (${a.author})`;
    if (text) {
      const at = p[a.kind === "angle" ? 1 : p.length - 1];
      ctx.lineWidth = 3 * scale;
      ctx.strokeStyle = "rgba(0,0,0,0.8)";
      ctx.strokeText(text, at.x + 6 * scale, at.y - 4 * scale);
      ctx.fillText(text, at.x + 6 * scale, at.y - 4 * scale);
      ctx.lineWidth = 1.5 * scale;
    }
  }
  ctx.restore();
}

// An arrow head at `tip`, pointing away from `from`.
function arrowHead(ctx, from, tip, scale) {
  const angle = Math.atan2(tip.y - from.y, tip.x - from.x);
  const size = 10 * scale;
  ctx.beginPath();
  ctx.moveTo(tip.x, tip.y);
  ctx.lineTo(tip.x - size * Math.cos(angle - 0.4), tip.y - size * Math.sin(angle - 0.4));
  ctx.lineTo(tip.x - size * Math.cos(angle + 0.4), tip.y - size * Math.sin(angle + 0.4));
  ctx.closePath();
  ctx.fill();
}
