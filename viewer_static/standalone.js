// The standalone page: /viewer/index.html#study=UID[,UID...]&token=TOKEN[&panel=ID]
// The fragment never reaches the server (nor its logs); without a token the
// page uses the same-origin session.

import { mountViewer } from "./viewer.js";

const params = new URLSearchParams(window.location.hash.slice(1));
const studies = (params.get("study") || "").split(",").filter(Boolean);
const panel = params.get("panel");
const viewer = mountViewer(document.getElementById("viewer"), {
  studyUIDs: studies.length ? studies : null,
  token: params.get("token") || null,
  panelId: panel || undefined,
  dicomwebRoot: params.get("root") || "/dicom-web",
});
// keep the token out of the address bar and the history once read
if (params.has("token")) {
  params.delete("token");
  history.replaceState(null, "", `${window.location.pathname}#${params}`);
}
viewer.root.focus();
window.viewer = viewer;
