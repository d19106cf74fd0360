// Projector mode before the first paint (a classic script in <head>, so turning it on never shifts the page):
// ?projector=1 in the address, or this tab's last choice when the address does not say.
(() => {
  const asked = new URLSearchParams(window.location.search).get("projector");
  let on = asked === "1";
  if (asked === null) {
    try {
      on = window.sessionStorage.getItem("cnn-vis-projector") === "1";
    } catch {
      on = false;
    }
  }
  if (on) document.documentElement.classList.add("projector");
})();
