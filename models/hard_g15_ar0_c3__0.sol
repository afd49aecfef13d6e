# sprkit 0.1.0 certified optimum (branch and bound, gap <= 1e-9)
instance hard_g15_ar0_c3.npz
lam0 0.43700098961309536
lam2 0.002
M 4.0
objective 25.634688283140807
bound 25.63468827032345
kept 0 1 2 4 5 6 7 11 14
checked scip 25.634688283140807
