-- The DuckDB peer of `c360 features training-set churn_signals --label churned_90d`:
-- scripts/oracle/churn_signals.sql and scripts/oracle/labels.sql generalised from one $as_of
-- to a spine of (customer_id, as_of) rows, in ONE query.
--
-- Reads the four contract relations (oracle_lib.connect binds them) and a relation `spine`
-- (customer_id VARCHAR, as_of DATE) that run.py binds to the spine Parquet. One row per
-- spine row (the spine has no duplicate (customer_id, as_of) pairs), sorted by
-- (customer_id, as_of). Every CTE that churn_signals.sql cuts at D (the params CTE) joins the
-- spine instead and keeps the spine's date as d; every aggregate groups by (customer_id, d).
-- The windows, the NULL rules and the final expressions are those of churn_signals.sql,
-- unchanged; see that file for the conventions (UTC dates, (D - N, D] windows).
--
-- This is the query an analyst would give DuckDB (an event is joined to each of its
-- customer's spine dates at or after it): its cost grows with dates x events, which is the
-- point of comparing it with c360's one pass per customer.
WITH
sp AS (
    SELECT DISTINCT customer_id, CAST(as_of AS DATE) AS d FROM spine
),

snapshot AS (
    SELECT s.customer_id, CAST(c.signup_ts AS DATE) AS signup_date, s.d
    FROM sp s JOIN customers c USING (customer_id)
    WHERE CAST(c.signup_ts AS DATE) <= s.d
),

ord AS (
    SELECT o.customer_id, o.status, o.amount, CAST(o.order_ts AS DATE) AS dt, s.d
    FROM orders o JOIN sp s USING (customer_id)
    WHERE CAST(o.order_ts AS DATE) <= s.d
),

ord_agg AS (
    SELECT
        customer_id, d,
        max(dt) FILTER (WHERE status = 'completed')                                  AS last_dt,
        count(*) FILTER (WHERE status = 'completed' AND dt > d - 30)                 AS orders_30d,
        count(*) FILTER (WHERE status = 'completed' AND dt > d - 90)                 AS orders_90d,
        count(*) FILTER (WHERE status = 'completed' AND dt > d - 365)                AS orders_365d,
        sum(amount) FILTER (WHERE status = 'completed' AND dt > d - 90)              AS spend_90d,
        sum(amount) FILTER (WHERE status = 'completed' AND dt > d - 365)             AS spend_365d,
        count(*) FILTER (WHERE status = 'completed' AND dt > d - 180 AND dt <= d - 90) AS orders_prev_90d,
        count(*) FILTER (WHERE status = 'returned' AND dt > d - 365)                 AS returned_365d
    FROM ord
    GROUP BY customer_id, d
),

purchase_days AS (
    SELECT DISTINCT customer_id, d, dt FROM ord WHERE status = 'completed'
),
gaps AS (
    SELECT customer_id, d, dt - lag(dt) OVER (PARTITION BY customer_id, d ORDER BY dt) AS gap
    FROM purchase_days
),
ipt AS (
    SELECT customer_id, d, avg(gap) AS avg_interpurchase_days
    FROM gaps
    GROUP BY customer_id, d
    HAVING count(gap) >= 1
),

tk AS (
    SELECT t.customer_id, CAST(t.opened_ts AS DATE) AS opened_dt,
           CAST(t.resolved_ts AS DATE) AS resolved_dt, t.csat, s.d
    FROM support_tickets t JOIN sp s USING (customer_id)
    WHERE CAST(t.opened_ts AS DATE) <= s.d
),
tk_agg AS (
    SELECT
        customer_id, d,
        count(*) FILTER (WHERE opened_dt > d - 90)                                  AS tickets_90d,
        count(*) FILTER (WHERE resolved_dt IS NULL OR resolved_dt > d)              AS open_tickets,
        avg(csat) FILTER (WHERE resolved_dt > d - 365 AND resolved_dt <= d)         AS avg_csat_365d
    FROM tk
    GROUP BY customer_id, d
),

ev AS (
    SELECT i.customer_id, i.event_type, CAST(i.event_ts AS DATE) AS dt, s.d
    FROM interactions i JOIN sp s USING (customer_id)
    WHERE CAST(i.event_ts AS DATE) <= s.d
),
ev_agg AS (
    SELECT
        customer_id, d,
        count(*) FILTER (WHERE event_type = 'web_visit' AND dt > d - 30)                 AS web_visits_30d,
        count(*) FILTER (WHERE event_type = 'web_visit' AND dt > d - 60 AND dt <= d - 30) AS web_visits_prev_30d,
        count(*) FILTER (WHERE event_type = 'app_login' AND dt > d - 30)                 AS app_logins_30d,
        count(*) FILTER (WHERE event_type = 'email_sent' AND dt > d - 90)                AS email_sent_90d,
        count(*) FILTER (WHERE event_type = 'email_open' AND dt > d - 90)                AS email_open_90d,
        count(*) FILTER (WHERE event_type = 'unsubscribe')                               AS unsubscribes
    FROM ev
    GROUP BY customer_id, d
),

-- labels.sql at each spine date: a completed order dated in (d, d + 90]
future_buyers AS (
    SELECT DISTINCT o.customer_id, s.d
    FROM orders o JOIN sp s USING (customer_id)
    WHERE o.status = 'completed'
      AND CAST(o.order_ts AS DATE) > s.d
      AND CAST(o.order_ts AS DATE) <= s.d + 90
)

SELECT
    s.customer_id,
    s.d                                                         AS as_of,
    s.d - o.last_dt                                             AS days_since_last_order,
    coalesce(o.orders_30d, 0)                                   AS orders_30d,
    coalesce(o.orders_90d, 0)                                   AS orders_90d,
    coalesce(o.orders_365d, 0)                                  AS orders_365d,
    coalesce(o.spend_90d, 0.0)                                  AS spend_90d,
    coalesce(o.spend_365d, 0.0)                                 AS spend_365d,
    coalesce(o.orders_prev_90d, 0)                              AS orders_prev_90d,
    CAST(coalesce(o.orders_90d, 0) - coalesce(o.orders_prev_90d, 0) AS DOUBLE)
        / greatest(coalesce(o.orders_prev_90d, 0), 1)           AS order_trend_90d,
    i.avg_interpurchase_days                                    AS avg_interpurchase_days,
    CASE WHEN i.avg_interpurchase_days IS NULL OR i.avg_interpurchase_days = 0 OR o.last_dt IS NULL
         THEN NULL
         ELSE CAST(s.d - o.last_dt AS DOUBLE) / i.avg_interpurchase_days
    END                                                         AS overdue_ratio,
    CASE WHEN coalesce(o.orders_365d, 0) + coalesce(o.returned_365d, 0) = 0 THEN NULL
         ELSE CAST(o.returned_365d AS DOUBLE) / (o.orders_365d + o.returned_365d)
    END                                                         AS return_rate_365d,
    coalesce(t.tickets_90d, 0)                                  AS tickets_90d,
    coalesce(t.open_tickets, 0)                                 AS open_tickets,
    t.avg_csat_365d                                             AS avg_csat_365d,
    coalesce(e.web_visits_30d, 0)                               AS web_visits_30d,
    coalesce(e.web_visits_prev_30d, 0)                          AS web_visits_prev_30d,
    coalesce(e.app_logins_30d, 0)                               AS app_logins_30d,
    CASE WHEN coalesce(e.email_sent_90d, 0) = 0 THEN NULL
         ELSE CAST(e.email_open_90d AS DOUBLE) / e.email_sent_90d
    END                                                         AS email_open_rate_90d,
    coalesce(e.unsubscribes, 0) > 0                             AS unsubscribed,
    s.d - s.signup_date                                         AS tenure_days,
    CAST(CASE WHEN f.customer_id IS NULL THEN 1 ELSE 0 END AS BIGINT) AS churned_90d
FROM snapshot s
LEFT JOIN ord_agg      o USING (customer_id, d)
LEFT JOIN ipt          i USING (customer_id, d)
LEFT JOIN tk_agg       t USING (customer_id, d)
LEFT JOIN ev_agg       e USING (customer_id, d)
LEFT JOIN future_buyers f USING (customer_id, d)
ORDER BY s.customer_id, s.d
