//! Read-only state shared by all cores, and small per-connection state.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// Read-only values keyed by type, built before the core loops start.
#[derive(Default, Clone)]
pub struct Shared {
    map: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Shared {
    /// Registers `value` (replacing one of the same type).
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.map.insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T`, if registered.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map.get(&TypeId::of::<T>())?.downcast_ref::<T>()
    }
}

/// One value per connection that outlives a request (a session, a counter).
#[derive(Default)]
pub struct ConnState {
    slot: Option<Box<dyn Any>>,
}

impl ConnState {
    /// The value of type `T`, created with `Default` (replacing a value of another type).
    pub fn get_or_default<T: Default + 'static>(&mut self) -> &mut T {
        if !self.slot.as_ref().is_some_and(|b| b.is::<T>()) {
            self.slot = Some(Box::new(T::default()));
        }
        self.slot.as_mut().and_then(|b| b.downcast_mut::<T>()).expect("slot holds T")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_and_conn_state() {
        let mut s = Shared::default();
        s.insert(42u32);
        assert_eq!(s.get::<u32>(), Some(&42));
        assert_eq!(s.get::<u64>(), None);
        let mut c = ConnState::default();
        *c.get_or_default::<u32>() += 2;
        assert_eq!(*c.get_or_default::<u32>(), 2);
        assert_eq!(c.get_or_default::<String>(), "");
    }
}
