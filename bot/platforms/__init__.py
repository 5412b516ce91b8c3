"""Platform adapters. Each translates platform events into engine events and renders replies."""
