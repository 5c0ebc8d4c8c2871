//! Guided lab exercises that grade themselves. The labs arrive with their own issue; this crate holds their place in the workspace.
