//! Views a server render builds once.
//!
//! After its resources have loaded, a `<Suspense>` or `<Transition>` walks its children once more
//! to find resource reads it has not waited for yet, and that walk calls every closure in the
//! view (each `<Show>`, `<For>` row, reactive attribute), building their views only to throw
//! them away; rendering then builds them again. A view given here is left out of that walk
//! (Leptos' `Unsuspend`) and built when it is rendered. Only for views that read no resource the
//! boundary must wait for: a nested `<Suspense>` inside still waits for its own. P4 in
//! BENCHMARKS.md.

use leptos::{prelude::*, suspense::Unsuspend};

/// `build`'s view, built under the reactive owner current now (where it would have been built
/// without the wrapper), so the contexts it provides reach its children as before.
pub fn built_once<V>(build: impl FnOnce() -> V + Send + 'static) -> AnyView
where
    V: IntoView + 'static,
{
    let owner = Owner::current();
    Unsuspend::new(move || match owner {
        Some(owner) => owner.with(build).into_any(),
        None => build().into_any(),
    })
    .into_any()
}
