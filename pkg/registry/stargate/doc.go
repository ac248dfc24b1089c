// Package stargate holds what the registries of the stargate.io resources share.
package stargate
