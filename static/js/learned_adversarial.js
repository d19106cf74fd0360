// The "adversarial" view of the learned page: mount(root, state) is called once, when the view is first shown.
export function mount(root) {
  root.dataset.mounted = "1";
}
