package main

import (
	"fmt"
	"strings"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
	"github.com/spf13/cobra"
)

func newAlarmCmd() *cobra.Command {
	al := &cobra.Command{Use: "alarm", Short: "Set, read, delete and list alarms (durable timers)"}
	var at, in, every, payload string
	set := &cobra.Command{
		Use:   "set NAMESPACE OBJECT [NAME]",
		Short: "Set (or replace) an alarm",
		Long: `Set (or replace) an alarm on an object: --at an RFC 3339 time or --in a
duration from now (by the leader's clock), an optional --payload delivered
with it, and --every to repeat. NAME defaults to "default".`,
		Example: `  cairn alarm set sessions user-42 --in 30m --payload '{"reason":"idle"}'
  cairn alarm set cameras cam-7 poll --at 2026-12-01T09:00:00Z --every 1h`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := client.AlarmSpec{Payload: []byte(payload)}
			if len(args) == 3 {
				spec.Name = args[2]
			}
			switch {
			case at != "" && in != "":
				return fmt.Errorf("use only one of --at and --in")
			case at != "":
				t, err := time.Parse(time.RFC3339Nano, at)
				if err != nil {
					return fmt.Errorf("--at %q: use RFC 3339, like 2026-12-01T09:00:00Z", at)
				}
				spec.FireAt = t
			case in != "":
				d, err := time.ParseDuration(in)
				if err != nil {
					return fmt.Errorf("--in %q: %v", in, err)
				}
				spec.FireIn = d
			default:
				return fmt.Errorf("say when: --at TIME or --in DURATION")
			}
			if every != "" {
				d, err := time.ParseDuration(every)
				if err != nil {
					return fmt.Errorf("--every %q: %v", every, err)
				}
				spec.RepeatEvery = d
			}
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.SetAlarm(cmd.Context(), args[0], args[1], spec)
			if err != nil {
				return err
			}
			return printAlarms(cmd, resp.Alarm)
		},
	}
	set.Flags().StringVar(&at, "at", "", "when to fire (RFC 3339)")
	set.Flags().StringVar(&in, "in", "", "fire this long from now (like 30s, 5m, 2h)")
	set.Flags().StringVar(&every, "every", "", "repeat at this interval")
	set.Flags().StringVar(&payload, "payload", "", "bytes delivered with the alarm")
	get := &cobra.Command{
		Use:     "get NAMESPACE OBJECT [NAME]",
		Short:   "Show an alarm",
		Example: "  cairn alarm get sessions user-42\n  cairn alarm get cameras cam-7 poll -o json",
		Args:    cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			a, err := c.Alarm(cmd.Context(), args[0], args[1], nameArg(args))
			if err != nil {
				return err
			}
			return printAlarms(cmd, a)
		},
	}
	del := &cobra.Command{
		Use:     "del NAMESPACE OBJECT [NAME]",
		Short:   "Delete an alarm",
		Example: "  cairn alarm del sessions user-42",
		Args:    cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			deleted, err := c.DeleteAlarm(cmd.Context(), args[0], args[1], nameArg(args))
			if err != nil {
				return err
			}
			p := newPrinter(cmd)
			if p.json {
				return p.value(map[string]any{"deleted": deleted})
			}
			p.table([]string{"DELETED"}, [][]string{{fmt.Sprint(deleted)}})
			return nil
		},
	}
	var filter client.AlarmFilter
	list := &cobra.Command{
		Use:     "list NAMESPACE",
		Short:   "List a namespace's alarms",
		Example: "  cairn alarm list sessions\n  cairn alarm list cameras --state dead -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			var all []*cairnv1.Alarm
			for a, err := range c.Alarms(cmd.Context(), args[0], filter) {
				if err != nil {
					return err
				}
				all = append(all, a)
			}
			return printAlarms(cmd, all...)
		},
	}
	list.Flags().StringVar(&filter.State, "state", "", "pending, delivering or dead")
	list.Flags().StringVar(&filter.Object, "object", "", "only this object's alarms")
	list.Flags().StringVar(&filter.ObjectPrefix, "object-prefix", "", "only objects whose names start with this")
	al.AddCommand(set, get, del, list)
	return al
}

func nameArg(args []string) string {
	if len(args) == 3 {
		return args[2]
	}
	return ""
}

func printAlarms(cmd *cobra.Command, all ...*cairnv1.Alarm) error {
	p := newPrinter(cmd)
	if p.json {
		for _, a := range all {
			if err := p.message(a); err != nil {
				return err
			}
		}
		return nil
	}
	var rows [][]string
	for _, a := range all {
		repeat := "-"
		if a.RepeatEvery != nil {
			repeat = a.RepeatEvery.AsDuration().String()
		}
		rows = append(rows, []string{a.Object, a.Name, a.FireAt.AsTime().Format(time.RFC3339Nano),
			strings.TrimPrefix(a.State.String(), "ALARM_STATE_"), fmt.Sprint(a.Attempt), repeat, a.LastError})
	}
	p.table([]string{"OBJECT", "NAME", "FIRE_AT", "STATE", "ATTEMPT", "REPEAT", "LAST_ERROR"}, rows)
	return nil
}
